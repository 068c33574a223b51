"""SASRec (Kang & McAuley, 2018) trained with a full-softmax cross-entropy over all items.

The strong form of the baseline (SPEC section 6): the hidden state at the most
recent history position is scored against every item embedding (the input item
embedding doubles as the output layer) and trained with cross-entropy on the
example's target. One example = one sliding-window (history -> next item) pair of
the training split, so the model sees exactly what the generative models see.

Histories are left-padded (most recent item in the last column). Positions are
counted from the end, so the most recent item always has position 0 and a
trimmed batch gives the same result as the full-width one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from prismrec.recommender.base import Batch, ModelContext, SequentialRecommender
from prismrec.recommender.config import RecommenderConfig
from prismrec.recommender.dropout import Dropout
from prismrec.recommender.transformer import attention


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        assert dim % heads == 0, "sasrec_dim must be divisible by sasrec_heads"
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = Dropout(dropout)  # on the attention weights

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        B, W, D = x.shape
        q, k, v = self.qkv(x).view(B, W, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        out = attention(q, k, v, allowed[:, None], self.dropout)
        return self.proj(out.transpose(1, 2).reshape(B, W, D))


class Block(nn.Module):
    """Pre-LayerNorm Transformer block: causal self-attention, then a point-wise FFN."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), Dropout(dropout), nn.Linear(dim, dim))
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), allowed))
        return x + self.drop(self.ffn(self.norm2(x)))


class SASRec(SequentialRecommender):
    def __init__(self, num_items: int, max_len: int = 20, dim: int = 64, blocks: int = 2, heads: int = 1,
                 dropout: float = 0.5):
        super().__init__()
        self.num_items = num_items
        self.item_emb = nn.Embedding(num_items + 1, dim, padding_idx=0)  # row i+1 = item_idx i, row 0 = padding
        self.pos_emb = nn.Embedding(max_len, dim)
        self.emb_drop = Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, dropout) for _ in range(blocks))
        self.norm = nn.LayerNorm(dim)
        for name, p in self.named_parameters():
            if p.dim() > 1:
                nn.init.xavier_normal_(p)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    @classmethod
    def from_context(cls, ctx: ModelContext, cfg: RecommenderConfig) -> "SASRec":
        return cls(ctx.num_items, max_len=ctx.data.config.max_history, dim=cfg.sasrec_dim, blocks=cfg.sasrec_blocks,
                   heads=cfg.sasrec_heads, dropout=cfg.sasrec_dropout)

    def encode(self, history: torch.Tensor) -> torch.Tensor:
        """(B, W) left-padded item_idx -> (B, dim) representation after the most recent item."""
        B, W = history.shape
        real = history >= 0
        x = self.item_emb(history + 1) * math.sqrt(self.item_emb.embedding_dim)
        positions = torch.arange(W - 1, -1, -1, device=history.device).clamp(max=self.pos_emb.num_embeddings - 1)
        x = self.emb_drop(x + self.pos_emb(positions)) * real.unsqueeze(-1)
        # query i may read key j <= i that is a real item; the diagonal keeps padding rows defined
        causal = torch.ones(W, W, dtype=torch.bool, device=history.device).tril()
        allowed = causal & (real[:, None, :] | torch.eye(W, dtype=torch.bool, device=history.device))
        for block in self.blocks:
            x = block(x, allowed) * real.unsqueeze(-1)
        return self.norm(x[:, -1])

    def scores(self, history: torch.Tensor) -> torch.Tensor:
        """(B, num_items) logits of every item as the next one."""
        return self.encode(history) @ self.item_emb.weight[1:].T

    def calculate_loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {"loss": F.cross_entropy(self.scores(batch.history).float(), batch.target)}

    @torch.no_grad()
    def rank(self, batch: Batch, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        scores, items = self.scores(batch.history).float().topk(min(k, self.num_items), dim=1)
        return items, scores
