"""The features stage's artefacts: ``RUN_DIR/features/``.

``content.npy``        (N, d_text) float32  text-encoder embedding of each item's text
``collab.npy``         (N, 64) float32      LightGCN embedding (selected checkpoint)
``tags_level{l}.npy``  (V_l + 1, d_text)    encoder embedding of each level-l tag; row 0 (PAD) is zeros
``lightgcn.json``      training curve and the selected epoch / validation Recall@20
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prismrec.artifacts import atomic_write, require_stage

STAGE = "features"


@dataclass
class ItemFeatures:
    content: np.ndarray              # (N, d_text)
    collab: np.ndarray               # (N, d_collab)
    tag_embeddings: list[np.ndarray]  # per level: (V_l + 1, d_text), row 0 = PAD

    @property
    def num_items(self) -> int:
        return self.content.shape[0]


def save_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda p: np.save(open(p, "wb"), np.ascontiguousarray(array)))


def write_features(stage_dir: Path, features: ItemFeatures) -> None:
    """Write features into a stage directory (normally the one ``build_stage`` yields)."""
    save_npy(stage_dir / "content.npy", features.content.astype(np.float32))
    save_npy(stage_dir / "collab.npy", features.collab.astype(np.float32))
    for level, emb in enumerate(features.tag_embeddings, start=1):
        save_npy(stage_dir / f"tags_level{level}.npy", emb.astype(np.float32))


def load_features(run_dir: str | Path) -> ItemFeatures:
    stage = require_stage(run_dir, STAGE, "prismrec features RUN_DIR")
    tags = []
    level = 1
    while (stage / f"tags_level{level}.npy").exists():
        tags.append(np.load(stage / f"tags_level{level}.npy"))
        level += 1
    return ItemFeatures(content=np.load(stage / "content.npy"), collab=np.load(stage / "collab.npy"),
                        tag_embeddings=tags)
