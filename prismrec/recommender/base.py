"""The contract every next-item model implements (PRISM, TIGER, SASRec, most-popular).

A model is an ``nn.Module`` with two methods:

* ``calculate_loss(batch) -> dict`` — training loss (key ``"loss"``) plus any parts
  worth logging (floats or 0-d tensors); ``model(batch)`` calls it;
* ``rank(batch, k) -> (items, scores)`` — the top-``k`` next items per history,
  ``items`` (B, k) int64 item_idx in descending ``scores`` order, -1 where fewer than
  ``k`` items were produced.

Models are built from a ``ModelContext`` (everything the run directory knows
about the catalog) by ``prismrec.recommender.registry.build_model``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import nn

from prismrec.data.dataset import Examples, PreparedData
from prismrec.features.store import ItemFeatures
from prismrec.tokenizer.store import SemanticIds


@dataclass
class Batch:
    history: torch.Tensor      # (B, H) int64 item_idx, left-padded with -1 (most recent last)
    time_bucket: torch.Tensor  # (B, H) int64
    length: torch.Tensor       # (B,) int64
    target: torch.Tensor       # (B,) int64 item_idx

    @classmethod
    def from_arrays(cls, history: np.ndarray, time_bucket: np.ndarray, length: np.ndarray, target: np.ndarray,
                    device: torch.device | str) -> "Batch":
        """A batch on ``device`` from host arrays, without the all-padding leading columns: a batch
        of short histories (length-bucketed) runs on a short input. Trimming on the host moves
        fewer bytes and needs no device-to-host sync for the width."""
        width = max(int(length.max()) if len(length) else 1, 1)

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.long).to(device, non_blocking=True)

        return cls(t(history[:, -width:]), t(time_bucket[:, -width:]), t(length), t(target))

    @classmethod
    def from_examples(cls, ex: Examples, index: np.ndarray | slice, device: torch.device | str) -> "Batch":
        return cls.from_arrays(ex.history[index], ex.time_bucket[index], ex.length[index], ex.target[index], device)


@dataclass
class ModelContext:
    data: PreparedData
    features: Optional[ItemFeatures] = None
    sids: Optional[SemanticIds] = None

    @property
    def num_items(self) -> int:
        return self.data.num_items


class SequentialRecommender(nn.Module, ABC):
    """Base class of next-item models."""

    @abstractmethod
    def calculate_loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        ...

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The training step's call: ``calculate_loss`` (DistributedDataParallel wraps ``forward``)."""
        return self.calculate_loss(batch)

    @abstractmethod
    def rank(self, batch: Batch, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        ...

    def num_parameters(self) -> dict[str, int]:
        """Total parameters and those active for one item (models with experts override)."""
        total = sum(p.numel() for p in self.parameters())
        return {"total": total, "active": total}
