"""Small synthetic catalogs with learnable structure, for tests and benchmarks.

Items belong to clusters (which double as category tags); each user mostly walks
within one cluster in a fixed item order, so next-item prediction is learnable.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from prismrec.artifacts import build_stage
from prismrec.data.config import DataConfig
from prismrec.data.dataset import write_prepared


def synthetic_tables(num_users: int = 200, num_items: int = 60, num_clusters: int = 6, min_len: int = 5,
                     max_len: int = 14, num_levels: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    cluster = np.arange(num_items) % num_clusters
    sub = (np.arange(num_items) // num_clusters) % 2
    seqs, times = [], []
    for u in range(num_users):
        c = rng.integers(num_clusters)
        members = np.flatnonzero(cluster == c)
        n = int(rng.integers(min_len, max_len + 1))
        start = int(rng.integers(len(members)))
        walk = [members[(start + j) % len(members)] for j in range(n)]
        noise = rng.random(n) < 0.1
        walk = np.where(noise, rng.integers(num_items, size=n), walk)
        seqs.append(walk.astype(np.int32))
        t0 = 1_300_000_000 + int(rng.integers(0, 10**7))
        times.append((t0 + np.cumsum(rng.integers(0, 5 * 86400, size=n))).astype(np.int64))
    # every item must appear in training for the popularity to be defined; fine for tests
    counts = np.zeros(num_items, dtype=np.int64)
    for s in seqs:
        np.add.at(counts, s[:-2], 1)
    pop = np.log1p(counts)
    pop = (pop - pop.min()) / max(pop.max() - pop.min(), 1e-12)
    levels = [[f"cluster{c}" for c in cluster], [f"cluster{c}-sub{s}" for c, s in zip(cluster, sub)],
              [f"item-kind{i % 3}" for i in range(num_items)]][:num_levels]
    tag_rows, tag_cols = [], {}
    for level, names in enumerate(levels, start=1):
        vocab = sorted(set(names))
        index = {t: i + 1 for i, t in enumerate(vocab)}
        tag_rows += [(level, index[t], t) for t in vocab]
        tag_cols[f"tag_{level}"] = np.array([index[t] for t in names], dtype=np.int32)
    items = pd.DataFrame({
        "item_idx": np.arange(num_items, dtype=np.int32),
        "item_id": [f"I{i:05d}" for i in range(num_items)],
        "title": [f"Item {i} of cluster {c}" for i, c in enumerate(cluster)],
        "brand": [f"brand{c}" for c in cluster],
        "category_path": [[lv[i] for lv in levels] for i in range(num_items)],
        "text": [f"Title: Item {i}. Brand: brand{c}. Category: cluster{c}" for i, c in enumerate(cluster)],
        "has_metadata": np.ones(num_items, dtype=bool),
        "train_count": counts,
        "popularity": pop,
        **tag_cols,
    })
    sequences = pd.DataFrame({"user_idx": np.arange(num_users, dtype=np.int32),
                              "user_id": [f"U{u:05d}" for u in range(num_users)],
                              "items": seqs, "timestamps": times})
    tags = pd.DataFrame(tag_rows, columns=["level", "tag_idx", "tag"]).astype({"level": np.int32, "tag_idx": np.int32})
    return items, sequences, tags


def write_synthetic_run(run_dir: str | Path, seed: int = 0, **kwargs) -> Path:
    """Write a synthetic ``RUN_DIR/data`` stage, as ``prismrec prepare`` would."""
    cfg = DataConfig(num_levels=kwargs.get("num_levels", 3))
    items, sequences, tags = synthetic_tables(seed=seed, **kwargs)
    with build_stage(Path(run_dir) / "data", config={"data": asdict(cfg), "source": "synthetic"},
                     inputs={"seed": str(seed)}) as stage:
        write_prepared(stage, items, sequences, tags)
    return Path(run_dir)
