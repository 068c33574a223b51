"""Dropout whose random mask is cheap on a CPU.

``nn.Dropout`` on a CPU draws one random number per element (``bernoulli_``); in a
training step of the ISR that cost more than all the dropout layers' arithmetic
(benchmarks/results/cpu-dropout-2026-11-26.md). Here one 64-bit draw of the generator
gives four 16-bit numbers, so a mask takes a quarter of the draws. The drop probability is
``p`` rounded to a multiple of 1/65536 and the kept values are scaled by the inverse of the
rounded keep probability, so the output's expectation is the input exactly.

Other devices keep ``F.dropout`` (fused there). The mask comes from torch's default CPU
generator, so ``torch.manual_seed`` and a saved RNG state reproduce it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_LEVELS = 1 << 16


def keep_mask(shape: torch.Size, p: float) -> torch.Tensor:
    """Boolean mask of ``shape``, each element True with probability 1 - round(p * 2^16) / 2^16."""
    n = shape.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(1 << 63), (1 << 63) - 1)
    uniform16 = words.view(torch.int16)[:n].view(shape)     # uniform over [-2^15, 2^15)
    return uniform16 >= round(p * _LEVELS) - (1 << 15)


class Dropout(nn.Dropout):
    """``nn.Dropout`` (same arguments and state), with :func:`keep_mask` on CPU tensors."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dropped = round(self.p * _LEVELS)
        if not self.training or x.device.type != "cpu" or dropped in (0, _LEVELS) or self.inplace:
            return F.dropout(x, self.p, self.training, self.inplace)
        scale = torch.tensor(_LEVELS / (_LEVELS - dropped), dtype=x.dtype)
        # the mask is materialised in x's dtype (autograd saves it for the backward, as F.dropout does)
        return x * torch.where(keep_mask(x.shape, self.p), scale, torch.zeros((), dtype=x.dtype))
