"""A tensorised trie of Semantic IDs and trie-constrained beam search.

The trie is stored per depth as one dense transition table instead of nodes and
pointers, so a beam-search step looks up the valid children of every
(user x beam) prefix with a single gather:

``transitions[d]``  (P_d, V_d) int64 — for prefix node ``p`` at depth ``d`` (a prefix
                    of ``d`` tokens) and next token ``v``: the id of the prefix node of
                    length ``d + 1``, or -1 when ``v`` is not a valid child. At the last
                    depth the "next node" is the item_idx the complete SID belongs to.
``branching[d]``    (P_d,) number of valid children of each prefix node (N_l of ATS).
``item_nodes``      (N, T) the prefix node each item passes through before token ``d``.

Depth 0 has one node (the empty prefix). Memory is sum_d P_d * V_d entries; for
Beauty (12,101 items, 3 x 256 codes) about 3.2M int64 = 26 MB at the last depth.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

# step_logits_fn(prefix_tokens (B, W, d), depth d, parent (B, W) or None) -> logits (B, W, V_d);
# parent[b, w] is the beam of the previous step that beam w extends (None at depth 0): a
# decoder that caches its beams' states reorders its cache with it
StepLogitsFn = Callable[[torch.Tensor, int, Optional[torch.Tensor]], torch.Tensor]
# temperature_fn(branching factors (B, W) float) -> temperatures (B, W)
TemperatureFn = Callable[[torch.Tensor], torch.Tensor]


class SemanticIdTrie(nn.Module):
    """All valid SIDs of a catalog; an ``nn.Module`` only so that ``.to(device)`` moves its tables."""

    def __init__(self, codes: np.ndarray | torch.Tensor, vocab_sizes: Optional[Sequence[int]] = None):
        super().__init__()
        codes = torch.as_tensor(np.array(codes, dtype=np.int64))  # a copy: inputs may be read-only views
        if codes.ndim != 2 or len(codes) == 0:
            raise ValueError(f"codes must be a non-empty (N, T) matrix, got shape {tuple(codes.shape)}")
        if (codes < 0).any():
            raise ValueError("SID tokens must be non-negative")
        num_items, depth = codes.shape
        if vocab_sizes is None:
            vocab_sizes = (codes.max(0).values + 1).tolist()
        self.vocab_sizes = [int(v) for v in vocab_sizes]
        if len(self.vocab_sizes) != depth or any(int(codes[:, d].max()) >= v for d, v in enumerate(self.vocab_sizes)):
            raise ValueError(f"vocab_sizes {self.vocab_sizes} do not cover the codes")
        if len(torch.unique(codes, dim=0)) != num_items:
            raise ValueError("SIDs must be unique (one item per complete SID)")
        self.num_items, self.depth = num_items, depth

        node = torch.zeros(num_items, dtype=torch.long)  # every item starts at the root
        item_nodes = []
        for d in range(depth):
            num_nodes = int(node.max()) + 1
            item_nodes.append(node)
            if d < depth - 1:
                # prefix node ids at depth d+1: dense ranks of (node, token) pairs
                key = node * self.vocab_sizes[d] + codes[:, d]
                _, child = torch.unique(key, return_inverse=True)
            else:
                child = torch.arange(num_items)  # a complete SID leads to its item
            table = torch.full((num_nodes, self.vocab_sizes[d]), -1, dtype=torch.long)
            table[node, codes[:, d]] = child
            self.register_buffer(f"transitions_{d}", table, persistent=False)
            self.register_buffer(f"branching_{d}", (table >= 0).sum(1), persistent=False)
            node = child
        self.register_buffer("item_nodes", torch.stack(item_nodes, 1), persistent=False)
        self.register_buffer("codes", codes, persistent=False)

    def transitions(self, d: int) -> torch.Tensor:
        return getattr(self, f"transitions_{d}")

    def branching(self, d: int) -> torch.Tensor:
        return getattr(self, f"branching_{d}")

    def item_branching(self) -> torch.Tensor:
        """(N, T) branching factor of each item's own prefix before each of its tokens."""
        return torch.stack([self.branching(d)[self.item_nodes[:, d]] for d in range(self.depth)], 1)

    def item_child_masks(self, items: torch.Tensor, d: int) -> torch.Tensor:
        """(..., V_d) valid next tokens after the first ``d`` tokens of each item's SID."""
        return self.transitions(d)[self.item_nodes[items, d]] >= 0


def constrained_log_probs(logits: torch.Tensor, valid: torch.Tensor,
                          temperature: Optional[torch.Tensor] = None) -> torch.Tensor:
    """log-softmax over the valid children only (invalid tokens get -inf).

    ``temperature`` (shape of ``logits`` without the last dim) divides the logits first (ATS).
    A row without any valid child (a dead beam) is all -inf.
    """
    logits = logits.float()
    if temperature is not None:
        logits = logits / temperature.unsqueeze(-1).float()
    logits = logits.masked_fill(~valid, float("-inf"))
    norm = torch.logsumexp(logits, dim=-1, keepdim=True).clamp_min(-1e30)  # dead rows: -inf - (-1e30) = -inf
    return torch.where(valid, logits - norm, logits)


@torch.no_grad()
def beam_search(step_logits_fn: StepLogitsFn, trie: SemanticIdTrie, batch_size: int, beam_size: int,
                temperature_fn: Optional[TemperatureFn] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Trie-constrained beam search for ``batch_size`` users at once.

    Returns ``items`` (B, beam_size) item_idx and ``scores`` (B, beam_size) summed
    constrained log-probabilities, sorted by descending score; -1 / -inf where the
    catalog (or the beam) holds fewer valid items than ``beam_size``.
    """
    device = trie.codes.device
    nodes = torch.zeros(batch_size, 1, dtype=torch.long, device=device)   # (B, W) prefix node per beam
    scores = torch.zeros(batch_size, 1, device=device)                   # (B, W)
    tokens = torch.zeros(batch_size, 1, 0, dtype=torch.long, device=device)  # (B, W, d)
    parent = None
    for d in range(trie.depth):
        children = trie.transitions(d)[nodes]                            # (B, W, V)
        valid = children >= 0
        temperature = temperature_fn(trie.branching(d)[nodes].float()) if temperature_fn is not None else None
        logp = constrained_log_probs(step_logits_fn(tokens, d, parent), valid, temperature)
        candidates = (scores.unsqueeze(-1) + logp).flatten(1)            # (B, W * V); -inf = not a valid SID
        width = min(beam_size, candidates.shape[1])
        scores, flat = candidates.topk(width, dim=1)                     # sorted, best first
        vocab = logp.shape[-1]
        parent, token = flat // vocab, flat % vocab
        nodes = children.flatten(1).gather(1, flat)
        alive = torch.isfinite(scores)
        nodes = torch.where(alive, nodes, 0)  # park dead beams on a valid node; their score stays -inf
        tokens = torch.cat([tokens.gather(1, parent.unsqueeze(-1).expand(-1, -1, d)), token.unsqueeze(-1)], -1)
    items = torch.where(torch.isfinite(scores), nodes, -1)
    if items.shape[1] < beam_size:  # fewer candidates than beams at every step (tiny catalogs)
        pad = beam_size - items.shape[1]
        items = torch.cat([items, items.new_full((batch_size, pad), -1)], 1)
        scores = torch.cat([scores, scores.new_full((batch_size, pad), float("-inf"))], 1)
    return items, scores
