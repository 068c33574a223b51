"""The tokenize stage's artefacts: ``RUN_DIR/tokenizer[-variant]/``.

``sids.parquet``   item_idx:int32, item_id:str, c_1..c_T:int32 — the collision-free
                   SID of every item (T = L for PRISM; L + 1 for TIGER's suffix token)
``codebooks.npy``  (L, K, d_cb) float32 — codebook vectors; q_l of an item = codebooks[l, c_l]
``quality.json``   SID quality report (keys fixed by the issue)
``model.pt``       the trained quantizer (state dict + config)

Variant directory names: PRISM with every module = ``tokenizer``; otherwise
``tokenizer-<mode>[-no-acd][-no-hsa][-no-dhr]`` (e.g. ``tokenizer-tiger``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from prismrec.artifacts import atomic_write, require_stage


@dataclass
class SemanticIds:
    codes: np.ndarray       # (N, T) int64 SID tokens per item; rows are unique
    codebooks: np.ndarray   # (L, K, d_cb) float32
    item_ids: np.ndarray    # (N,) raw item ids

    @property
    def length(self) -> int:
        return self.codes.shape[1]

    @property
    def vocab_sizes(self) -> list[int]:
        """Number of possible tokens at each SID position."""
        K = self.codebooks.shape[1]
        sizes = [K] * self.codebooks.shape[0]
        for extra in range(self.codebooks.shape[0], self.length):
            sizes.append(int(self.codes[:, extra].max()) + 1)
        return sizes

    def codebook_vectors(self) -> np.ndarray:
        """(N, L, d_cb) codebook vector q_l of each item at each quantized layer."""
        L = self.codebooks.shape[0]
        return np.stack([self.codebooks[l][self.codes[:, l]] for l in range(L)], axis=1)


def variant_name(mode: str = "prism", use_acd: bool = True, use_hsa: bool = True, use_dhr: bool = True,
                 collab_direction: bool = False) -> str:
    """Stage directory of a tokenizer config: ``tokenizer`` (the paper's PSQ), ``tokenizer-tiger``,
    ``tokenizer-prism-no-acd``, ``tokenizer-prism-no-acd-dir`` (collab_direction), ..."""
    if mode == "prism" and use_acd and use_hsa and use_dhr and not collab_direction:
        return "tokenizer"
    parts = [f"tokenizer-{mode}"]
    if mode == "prism":
        parts += [s for s, on in (("no-acd", use_acd), ("no-hsa", use_hsa), ("no-dhr", use_dhr)) if not on]
        parts += ["dir"] if collab_direction else []
    return "-".join(parts)


def write_sids(stage_dir: Path, sids: SemanticIds) -> None:
    table = pd.DataFrame({"item_idx": np.arange(len(sids.codes), dtype=np.int32),
                          "item_id": sids.item_ids.astype(str)})
    for t in range(sids.length):
        table[f"c_{t + 1}"] = sids.codes[:, t].astype(np.int32)
    atomic_write(stage_dir / "sids.parquet", lambda p: table.to_parquet(p, index=False))
    atomic_write(stage_dir / "codebooks.npy",
                 lambda p: np.save(open(p, "wb"), sids.codebooks.astype(np.float32)))


def load_sids(run_dir: str | Path, variant: str = "tokenizer") -> SemanticIds:
    hint = "prismrec tokenize RUN_DIR" + ("" if variant == "tokenizer" else f"  (variant {variant})")
    stage = require_stage(run_dir, variant, hint)
    table = pd.read_parquet(stage / "sids.parquet").sort_values("item_idx")
    cols = sorted((c for c in table.columns if c.startswith("c_")), key=lambda c: int(c[2:]))
    return SemanticIds(codes=table[cols].to_numpy(dtype=np.int64),
                       codebooks=np.load(stage / "codebooks.npy"),
                       item_ids=table["item_id"].to_numpy())
