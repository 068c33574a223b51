"""What every benchmark script records about its machine, and how it writes its results
(atomically, through prismrec.artifacts). Imported by the scripts in this folder, which run
as ``python benchmarks/<script>.py`` (so this folder is on ``sys.path``)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from prismrec.artifacts import write_json, write_text


def machine_info() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            # the dev machine is shared: a load above the core count slows every figure
            "load_average_1min_at_start": os.getloadavg()[0]}


def write_results(stem: Path, results: dict, lines: list[str]) -> None:
    """``stem``.json (the figures) and ``stem``.md (the table), each written atomically."""
    write_json(stem.with_suffix(".json"), results)
    write_text(stem.with_suffix(".md"), "\n".join(lines) + "\n")
