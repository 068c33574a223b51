"""The task dataset: prepared tables -> leave-one-out examples (SPEC section 2).

The prepare stage writes, under ``RUN_DIR/data/``:

``items.parquet``      one row per item, ``item_idx`` = 0..N-1 (row order)
    item_idx:int32, item_id:str, title:str, brand:str, category_path:list<str>
    (first path, root removed), text:str (encoder input), has_metadata:bool,
    train_count:int64 (training-part interactions), popularity:float64
    (log1p(train_count) min-max scaled to [0,1]), tag_1..tag_L:int32
    (per-level tag index, 0 = PAD)
``sequences.parquet``  one row per user, ``user_idx`` = 0..U-1 (row order)
    user_idx:int32, user_id:str, items:list<int32> (chronological, stable),
    timestamps:list<int64> (seconds)
``tags.parquet``       level:int32 (1..L), tag_idx:int32 (1..V_l), tag:str

Examples are built here, vectorised, never stored: for a user with n items,
targets at positions 1..n-3 are training examples (sliding window), n-2 is the
validation target and n-1 the test target; each history is the (at most)
``max_history`` items before the target. Histories are left-padded with -1, so
the most recent item is always the last column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from prismrec.artifacts import read_json, require_stage
from prismrec.data.config import DataConfig

PAD = -1
SPLITS = ("train", "valid", "test")


@dataclass
class Examples:
    """A batch-able set of (history -> target) examples of one split."""

    history: np.ndarray      # (n, H) int64 item_idx, left-padded with -1
    time_bucket: np.ndarray  # (n, H) int64 time-interval bucket of each history item (0 at padding)
    length: np.ndarray       # (n,) number of real items in the history
    target: np.ndarray       # (n,) int64 item_idx of the next item
    user: np.ndarray         # (n,) int64 user_idx

    def __len__(self) -> int:
        return len(self.target)

    def subset(self, index: np.ndarray) -> "Examples":
        return Examples(self.history[index], self.time_bucket[index], self.length[index],
                        self.target[index], self.user[index])


@dataclass
class PreparedData:
    items: pd.DataFrame
    sequences: pd.DataFrame
    tags: list[list[str]]    # per level: index 0 = "<pad>", then tag_idx 1..V_l
    config: DataConfig

    @property
    def num_items(self) -> int:
        return len(self.items)

    @property
    def num_users(self) -> int:
        return len(self.sequences)

    @property
    def num_levels(self) -> int:
        return len(self.tags)

    def item_tags(self) -> np.ndarray:
        """(N, L) int64 tag index of each item at each level (0 = PAD)."""
        cols = [f"tag_{level}" for level in range(1, self.num_levels + 1)]
        return self.items[cols].to_numpy(dtype=np.int64)

    def popularity(self) -> np.ndarray:
        return self.items["popularity"].to_numpy(dtype=np.float64)

    # ------------------------------------------------------------------ flattened sequences
    def _flat(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All users' items and timestamps concatenated, plus user start offsets (U+1,)."""
        if not hasattr(self, "_flat_cache"):
            lengths = self.sequences["items"].map(len).to_numpy(dtype=np.int64)
            offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            items = np.concatenate(self.sequences["items"].to_numpy()).astype(np.int64) if len(lengths) else np.zeros(0, np.int64)
            times = np.concatenate(self.sequences["timestamps"].to_numpy()).astype(np.int64) if len(lengths) else np.zeros(0, np.int64)
            self._flat_cache = (items, times, offsets)
        return self._flat_cache

    def time_buckets(self) -> np.ndarray:
        """Bucket of the time since the previous item, for every flattened position."""
        items, times, offsets = self._flat()
        delta = np.zeros_like(times)
        delta[1:] = times[1:] - times[:-1]
        first = np.zeros(len(times), dtype=bool)
        first[offsets[:-1][offsets[:-1] < len(times)]] = True
        return time_bucket(delta, first, self.config.num_time_buckets)

    def examples(self, split: str) -> Examples:
        """Leave-one-out examples of ``split`` (train | valid | test)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        items, _, offsets = self._flat()
        buckets = self.time_buckets()
        starts, ends = offsets[:-1], offsets[1:]
        lengths = ends - starts
        users = np.arange(len(lengths))
        if split == "test":
            tpos, tuser = ends - 1, users
        elif split == "valid":
            tpos, tuser = ends - 2, users
        else:  # positions start+1 .. end-3 of each user
            counts = np.maximum(lengths - 3, 0)
            tuser = np.repeat(users, counts)
            within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            tpos = starts[tuser] + 1 + within
        H = self.config.max_history
        cols = tpos[:, None] - H + np.arange(H)[None, :]
        valid = cols >= starts[tuser][:, None]
        safe = np.where(valid, cols, 0)
        history = np.where(valid, items[safe], PAD)
        tb = np.where(valid, buckets[safe], 0)
        return Examples(history=history, time_bucket=tb, length=valid.sum(1),
                        target=items[tpos], user=tuser.astype(np.int64))


def time_bucket(delta_seconds: np.ndarray, first: np.ndarray, num_buckets: int) -> np.ndarray:
    """Log-scale bucket of a time interval: 0 = no previous item, 1 = same hour, then log2 hours."""
    hours = np.maximum(delta_seconds, 0) / 3600.0
    b = 1 + np.floor(np.log2(1.0 + hours)).astype(np.int64)
    b = np.clip(b, 1, num_buckets - 1)
    return np.where(first, 0, b)


def load_prepared(run_dir: str | Path) -> PreparedData:
    """Load ``RUN_DIR/data`` (written by ``prismrec prepare``)."""
    stage = require_stage(run_dir, "data", "prismrec prepare ... --out RUN_DIR")
    manifest = read_json(stage / "manifest.json")
    from prismrec.config import from_dict as _from_dict

    cfg = _from_dict(DataConfig, manifest.get("config", {}).get("data", {}), where=str(stage / "manifest.json"))
    items = pd.read_parquet(stage / "items.parquet")
    sequences = pd.read_parquet(stage / "sequences.parquet")
    tag_table = pd.read_parquet(stage / "tags.parquet")
    tags: list[list[str]] = []
    for level in range(1, cfg.num_levels + 1):
        rows = tag_table[tag_table["level"] == level].sort_values("tag_idx")
        tags.append(["<pad>"] + rows["tag"].tolist())
    return PreparedData(items=items, sequences=sequences, tags=tags, config=cfg)


def write_prepared(stage_dir: Path, items: pd.DataFrame, sequences: pd.DataFrame, tag_table: pd.DataFrame) -> None:
    """Write the three prepared tables into a stage directory (see module docstring)."""
    from prismrec.artifacts import atomic_write

    for name, table in (("items", items), ("sequences", sequences), ("tags", tag_table)):
        atomic_write(stage_dir / f"{name}.parquet", lambda p, t=table: t.to_parquet(p, index=False))
