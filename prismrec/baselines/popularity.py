"""Most-popular baseline: the same top-k training-popular items for every user (a sanity floor)."""

from __future__ import annotations

import numpy as np
import torch

from prismrec.recommender.base import Batch, ModelContext, SequentialRecommender
from prismrec.recommender.config import RecommenderConfig


class MostPopular(SequentialRecommender):
    def __init__(self, train_count: np.ndarray):
        super().__init__()
        counts = torch.tensor(np.asarray(train_count), dtype=torch.float32)
        # stable order: ties broken by item index, so the list is reproducible
        order = torch.as_tensor(np.argsort(-np.asarray(train_count), kind="stable"), dtype=torch.long)
        self.register_buffer("counts", counts)
        self.register_buffer("order", order)

    @classmethod
    def from_context(cls, ctx: ModelContext, cfg: RecommenderConfig) -> "MostPopular":
        return cls(ctx.data.items["train_count"].to_numpy(dtype=np.int64))

    def calculate_loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        # nothing to learn: the counts come from the training part of the data
        return {"loss": torch.zeros((), device=self.counts.device)}

    @torch.no_grad()
    def rank(self, batch: Batch, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        top = self.order[:k]
        items = top.unsqueeze(0).expand(len(batch.target), -1)
        scores = self.counts[top].unsqueeze(0).expand(len(batch.target), -1)
        if k > len(top):  # tiny catalogs: pad with -1 as the contract says
            pad = k - len(top)
            items = torch.cat([items, items.new_full((len(items), pad), -1)], 1)
            scores = torch.cat([scores, scores.new_full((len(scores), pad), float("-inf"))], 1)
        return items, scores
