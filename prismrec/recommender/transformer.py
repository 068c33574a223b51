"""Pre-LayerNorm Transformer encoder-decoder for the ISR, written out on
``F.scaled_dot_product_attention``.

Same computation and parameter names as ``nn.TransformerEncoder/Decoder`` with
``norm_first=True``, ReLU and a final LayerNorm (so checkpoints of either load in the
other), but batch-first throughout: ``nn.MultiheadAttention`` transposes every
input to sequence-first and back (5-10% of a CPU training step of the ISR).

Masks here are boolean and True where attention is **allowed** (SDPA's convention).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from prismrec.recommender.dropout import Dropout


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor | None,
              dropout: nn.Dropout) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` with ``dropout`` on the attention weights.

    While training on a CPU with prismrec's :class:`Dropout`, the same math is written out so
    that the weights' mask comes from its cheap generator (SDPA's CPU path draws it with
    ``bernoulli_``; benchmarks/results/cpu-dropout-2026-11-26.md). Elsewhere, SDPA.
    """
    p = dropout.p if dropout.training else 0.0
    if p == 0.0 or q.device.type != "cpu" or type(dropout) is not Dropout:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    if allowed is not None:
        # the dtype's minimum, not -inf: a row with nothing allowed averages instead of giving NaN
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    return dropout(scores.softmax(-1)) @ v


class Attention(nn.Module):
    """Multi-head attention with a packed input projection (nn.MultiheadAttention's layout)."""

    def __init__(self, d_model: int, num_heads: int, dropout: float):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.dropout = Dropout(dropout)  # on the attention weights
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d_model))
        self.out_proj = nn.Linear(d_model, d_model)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (B, h, Lk, d_head) of a memory: computed once, read by every decoding step."""
        d = memory.shape[-1]
        k, v = F.linear(memory, self.in_proj_weight[d:], self.in_proj_bias[d:]).chunk(2, dim=-1)
        return self._heads(k), self._heads(v)

    def forward(self, x: torch.Tensor, memory_kv: tuple[torch.Tensor, torch.Tensor] | None,
                allowed: torch.Tensor | None) -> torch.Tensor:
        """x (B, Lq, d) attends to itself (memory_kv None) or to a memory's ``memory_kv``."""
        d = x.shape[-1]
        if memory_kv is None:
            q, k, v = (self._heads(t) for t in F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1))
        else:
            q = self._heads(F.linear(x, self.in_proj_weight[:d], self.in_proj_bias[:d]))
            k, v = memory_kv
        return self.out_proj(attention(q, k, v, allowed, self.dropout).transpose(1, 2).flatten(2))

    def step(self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Self-attention of one new position of many independent sequences, with cached keys.

        x (B, W, d): the newest position of W sequences per row; ``cache`` the (k, v) of their
        earlier positions, each (B, W, h, n, d_head), or None when there are none. Each
        sequence attends to its own positions only. Returns the output (B, W, d) and the
        cache with this position appended. Inference only (no attention dropout).
        """
        B, W, _ = x.shape
        q, k, v = (t.unflatten(-1, (self.num_heads, -1)).unsqueeze(3)          # (B, W, h, 1, d_head)
                   for t in F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1))
        if cache is not None:
            k, v = torch.cat([cache[0], k], 3), torch.cat([cache[1], v], 3)
        # one query per sequence, so no mask: every cached position is the sequence's own
        out = F.scaled_dot_product_attention(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1))
        return self.out_proj(out.view(B, W, -1)), (k, v)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:  # (B, L, d) -> (B, h, L, d_head)
        return t.unflatten(-1, (self.num_heads, t.shape[-1] // self.num_heads)).transpose(1, 2)


class _PreNormLayer(nn.Module):
    """The position-wise ReLU feed-forward part both layer kinds share."""

    def _add_feed_forward(self, d_model: int, d_ff: int, dropout: float) -> None:
        # created after the attention, as torch's layers do: the same seed gives the same weights
        self.linear1, self.linear2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.dropout = Dropout(dropout)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))


class EncoderLayer(_PreNormLayer):
    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.self_attn = Attention(d_model, num_heads, dropout)
        self._add_feed_forward(d_model, d_ff, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout1, self.dropout2 = Dropout(dropout), Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
        x = x + self.dropout1(self.self_attn(self.norm1(x), None, allowed))
        return x + self.dropout2(self.feed_forward(self.norm2(x)))


class DecoderLayer(_PreNormLayer):
    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.self_attn = Attention(d_model, num_heads, dropout)
        self.multihead_attn = Attention(d_model, num_heads, dropout)
        self._add_feed_forward(d_model, d_ff, dropout)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model) for _ in range(3))
        self.dropout1, self.dropout2, self.dropout3 = (Dropout(dropout) for _ in range(3))

    def forward(self, x: torch.Tensor, memory_kv: tuple[torch.Tensor, torch.Tensor], self_allowed: torch.Tensor | None,
                memory_allowed: torch.Tensor | None) -> torch.Tensor:
        x = x + self.dropout1(self.self_attn(self.norm1(x), None, self_allowed))
        x = x + self.dropout2(self.multihead_attn(self.norm2(x), memory_kv, memory_allowed))
        return x + self.dropout3(self.feed_forward(self.norm3(x)))

    def step(self, x: torch.Tensor, memory_kv: tuple[torch.Tensor, torch.Tensor], memory_allowed: torch.Tensor | None,
             cache: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``forward`` for the newest position (B, W, d) of W sequences sharing a row's memory
        (``Attention.step``); the W queries of a row read its memory as one packed query."""
        attended, cache = self.self_attn.step(self.norm1(x), cache)
        x = x + attended
        x = x + self.multihead_attn(self.norm2(x), memory_kv, memory_allowed)
        return x + self.feed_forward(self.norm3(x)), cache


def _copies(layer: nn.Module, n: int) -> nn.ModuleList:
    """n layers that start as copies of one initialisation, as in torch's nn.Transformer*
    (every measured run in benchmarks/ used that initialisation)."""
    return nn.ModuleList(copy.deepcopy(layer) for _ in range(n))


class Encoder(nn.Module):
    def __init__(self, num_layers: int, d_model: int, num_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.layers = _copies(EncoderLayer(d_model, num_heads, d_ff, dropout), num_layers)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """x (B, L, d); pad (B, L) True at padding positions."""
        allowed = ~pad[:, None, None, :]
        for layer in self.layers:
            x = layer(x, allowed)
        return self.norm(x)


class Decoder(nn.Module):
    def __init__(self, num_layers: int, d_model: int, num_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.layers = _copies(DecoderLayer(d_model, num_heads, d_ff, dropout), num_layers)
        self.norm = nn.LayerNorm(d_model)

    def memory_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every layer's cross-attention keys and values of ``memory``; pass them as ``memory``
        to decode many steps (beam search) without projecting the memory again each step."""
        return [layer.multihead_attn.memory_kv(memory) for layer in self.layers]

    def forward(self, x: torch.Tensor, memory, blocked: torch.Tensor, memory_pad: torch.Tensor) -> torch.Tensor:
        """x (B, Lq, d); memory (B, Lk, d) or its ``memory_kv``; blocked (Lq, Lq) True where a
        position may not look; memory_pad (B, Lk) True at padding."""
        kv = memory if isinstance(memory, list) else self.memory_kv(memory)
        self_allowed, memory_allowed = ~blocked, ~memory_pad[:, None, None, :]
        for layer, layer_kv in zip(self.layers, kv):
            x = layer(x, layer_kv, self_allowed, memory_allowed)
        return self.norm(x)

    def step(self, x: torch.Tensor, memory_kv: list, memory_pad: torch.Tensor, cache: list | None
             ) -> tuple[torch.Tensor, list]:
        """Incremental decoding: outputs (B, W, d) for the newest position x (B, W, d) of W
        sequences per row, all at the same position, given ``memory_kv`` and every layer's
        self-attention cache of their earlier positions (None at the first). Equals the last
        position of ``forward`` on each whole sequence, at a fraction of the cost: earlier
        positions are not recomputed. Returns the outputs and the extended cache; a caller that
        reorders its sequences (beam search) reorders the cache the same way."""
        memory_allowed = ~memory_pad[:, None, None, :]
        new_cache = []
        for layer, layer_kv, layer_cache in zip(self.layers, memory_kv, cache or [None] * len(self.layers)):
            x, layer_cache = layer.step(x, layer_kv, memory_allowed, layer_cache)
            new_cache.append(layer_cache)
        return self.norm(x), new_cache
