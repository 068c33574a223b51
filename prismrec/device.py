"""Which torch device a stage runs on (``auto`` = CUDA when a GPU is visible)."""

from __future__ import annotations

import torch

from prismrec.errors import PrismrecError


def resolve_device(name: str, field: str = "device") -> torch.device:
    """``auto`` | ``cpu`` | ``cuda[:N]`` -> a torch device; ``field`` names the config key in errors."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise PrismrecError(f"{field}: expected auto, cpu or cuda[:N], got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PrismrecError(f"{field}: {name!r} requested but no CUDA device is available (use cpu)")
    return torch.device(name)
