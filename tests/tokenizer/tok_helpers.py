"""Tiny synthetic runs (prepared data + clustered features) and configs for tokenizer tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prismrec.artifacts import build_stage
from prismrec.data.synthetic import write_synthetic_run
from prismrec.features.store import ItemFeatures, write_features
from prismrec.tokenizer.config import TokenizerConfig


def clustered_features(num_items: int, clusters: np.ndarray, tag_vocab: list[int], content_dim: int = 24,
                       seed: int = 0) -> ItemFeatures:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters.max() + 1, content_dim))
    content = centres[clusters] + 0.3 * rng.normal(size=(num_items, content_dim))
    collab = 0.1 * rng.normal(size=(num_items, 64))
    tables = [np.vstack([np.zeros((1, content_dim)), rng.normal(size=(v, content_dim))]) for v in tag_vocab]
    return ItemFeatures(content=content.astype(np.float32), collab=collab.astype(np.float32), tag_embeddings=tables)


def make_run(run_dir: Path, num_items: int = 90, seed: int = 0, features: ItemFeatures | None = None) -> Path:
    """A run directory with a synthetic data stage and a features stage written directly."""
    write_synthetic_run(run_dir, seed=seed, num_items=num_items, num_users=150)
    from prismrec.data.dataset import load_prepared

    data = load_prepared(run_dir)
    if features is None:
        vocab = [len(t) - 1 for t in data.tags]
        features = clustered_features(num_items, data.items["tag_1"].to_numpy() - 1, vocab, seed=seed)
    with build_stage(Path(run_dir) / "features", config={"features": "synthetic"}, inputs={"seed": str(seed)}) as stage:
        write_features(stage, features)
    return Path(run_dir)


def tiny_config(**overrides) -> TokenizerConfig:
    base = dict(codebook_size=8, latent_dim=8, hidden_dims=[32, 16], epochs=3, batch_size=32,
                kmeans_samples=256, dedup_neighbourhood=16, device="cpu", seed=0)
    base.update(overrides)
    return TokenizerConfig(**base)
