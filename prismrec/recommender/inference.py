"""Next-item recommendations from a trained model, for the CLI and the HTTP server.

    rec = Recommender.load(run_dir, cfg)            # cfg: PipelineConfig or RecommenderConfig
    rec.recommend(["B0001", "B0002"], k=10)         # [{"item_id", "title", "score"}, ...]
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from prismrec.data.dataset import PAD, time_bucket
from prismrec.errors import PrismrecError
from prismrec.recommender.base import Batch
from prismrec.recommender.graphs import GraphedRanker

log = logging.getLogger(__name__)


class Recommender:
    def __init__(self, model, ctx, checkpoint: dict, name: str, device: torch.device):
        self.model, self.ctx, self.checkpoint, self.name, self.device = model, ctx, checkpoint, name, device
        items = ctx.data.items
        self.item_ids = items["item_id"].astype(str).to_numpy()
        self.titles = items["title"].fillna("").astype(str).to_numpy()
        self.index = {item_id: i for i, item_id in enumerate(self.item_ids)}
        self.max_history = ctx.data.config.max_history
        self.num_time_buckets = ctx.data.config.num_time_buckets
        # on a GPU, a single history's beam search is captured once per history width and
        # replayed (launch-bound otherwise); batches rank eagerly (throughput-bound, and their
        # shapes would grow the cache without bound); a model that cannot be captured falls
        # back to eager ranking
        self.graphed = GraphedRanker(model) if device.type == "cuda" else None

    @property
    def model_name(self) -> str:
        return self.name

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @classmethod
    def load(cls, run_dir: str | Path, cfg, device: str | None = None) -> "Recommender":
        from prismrec.recommender.registry import model_dir_name
        from prismrec.device import resolve_device
        from prismrec.recommender.trainer import load_trained

        rcfg = getattr(cfg, "recommender", cfg)
        dev = resolve_device(device or rcfg.device, "recommender.device")
        model, ctx, checkpoint = load_trained(run_dir, rcfg, dev)
        return cls(model, ctx, checkpoint, model_dir_name(rcfg), dev)

    def item_indices(self, history_item_ids: Sequence[str]) -> np.ndarray:
        unknown = [i for i in history_item_ids if str(i) not in self.index]
        if unknown:
            shown = ", ".join(map(str, unknown[:10])) + (" ..." if len(unknown) > 10 else "")
            raise PrismrecError(f"history: unknown item id(s) {shown} (not in the run's items table)")
        if not history_item_ids:
            raise PrismrecError("history: expected at least one item id")
        return np.array([self.index[str(i)] for i in history_item_ids], dtype=np.int64)

    def make_batch(self, histories: list[Sequence[str]], timestamps: Optional[list[Sequence[int]]] = None) -> Batch:
        """One left-padded row per history (most recent item last), as the dataset builds them.

        Without timestamps the time-interval buckets are 0 (unknown), like a first item.
        """
        H = self.max_history
        rows = np.full((len(histories), H), PAD, dtype=np.int64)
        buckets = np.zeros((len(histories), H), dtype=np.int64)
        lengths = np.zeros(len(histories), dtype=np.int64)
        for r, history in enumerate(histories):
            try:
                idx = self.item_indices(history)[-H:]
                if timestamps is not None:
                    buckets[r, H - len(idx):] = self.time_buckets(timestamps[r], len(history))[-H:]
            except PrismrecError as e:  # in a batch, say which history
                raise PrismrecError(f"histories[{r}]: {e}" if len(histories) > 1 else str(e)) from None
            rows[r, H - len(idx):] = idx
            lengths[r] = len(idx)
        return Batch.from_arrays(rows, buckets, lengths, np.zeros(len(histories), dtype=np.int64), self.device)

    def time_buckets(self, timestamps: Sequence[int], length: int) -> np.ndarray:
        """Time-interval buckets of a history's timestamps (oldest first), as the dataset builds them."""
        t = np.asarray(timestamps, dtype=np.int64)
        if len(t) != length:
            raise PrismrecError(f"timestamps: expected {length} values (one per history item), got {len(t)}")
        if (np.diff(t) < 0).any():
            raise PrismrecError("timestamps: expected non-decreasing values (the history is oldest first)")
        first = np.zeros(len(t), dtype=bool)
        first[0] = True
        return time_bucket(np.diff(t, prepend=t[0]), first, self.num_time_buckets)

    @torch.no_grad()
    def recommend_many(self, histories: list[Sequence[str]], k: int = 10,
                       timestamps: Optional[list[Sequence[int]]] = None) -> list[list[dict]]:
        if k < 1:
            raise PrismrecError(f"k: expected a positive number of items, got {k}")
        batch = self.make_batch(histories, timestamps)
        items, scores = None, None
        if self.graphed is not None and len(histories) == 1:
            # every k up to the beam width shares one graph: rank(batch, K)[:, :k] is rank(batch, k)
            # while K <= the beam width (the beam search is the same; SASRec's top-K starts with its top-k)
            width = max(k, getattr(getattr(self.model, "cfg", None), "beam_size", k))
            try:
                items, scores = self.graphed(batch, width)
                items, scores = items[:, :k], scores[:, :k]
            except RuntimeError as e:  # e.g. a host sync inside the model's rank: not capturable
                log.warning("CUDA graph capture of %s failed (%s); ranking eagerly from now on", self.name, e)
                self.graphed = None
        if items is None:
            items, scores = self.model.rank(batch, k)
        items, scores = items.cpu().numpy(), scores.float().cpu().numpy()
        return [[{"item_id": str(self.item_ids[i]), "title": str(self.titles[i]), "score": float(s)}
                 for i, s in zip(row_items, row_scores) if i >= 0]
                for row_items, row_scores in zip(items, scores)]

    def recommend(self, history_item_ids: Sequence[str], k: int = 10,
                  timestamps: Optional[Sequence[int]] = None) -> list[dict]:
        """Top-k next items for one history (oldest first), best first."""
        return self.recommend_many([history_item_ids], k, None if timestamps is None else [timestamps])[0]
