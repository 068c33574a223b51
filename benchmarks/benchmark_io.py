"""What every benchmark script records about its machine, and how it writes its results
(atomically, through prismrec.artifacts). Imported by the scripts in this folder, which run
as ``python benchmarks/<script>.py`` (so this folder is on ``sys.path``)."""

from __future__ import annotations

import os
import platform
import re
import shlex
import sys
from pathlib import Path

import torch

from prismrec.artifacts import write_json, write_text


def cpu_model() -> str:
    """The CPU's model name (Linux), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    from prismrec.device import cpu_has_native_bf16

    # the same VM size has come as an AMX Xeon (bf16 autocast on) and an AVX2 EPYC (float32, each
    # training epoch ~30% longer): time-budgeted figures depend on which
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_model": cpu_model(), "cpu_native_bf16": cpu_has_native_bf16(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            # the dev machine is shared: a load above the core count slows every figure
            "load_average_1min_at_start": os.getloadavg()[0]}


def command_line(*run_dirs: str | Path) -> str:
    """The command that made a result, as typed from the repository root, with each run directory
    written RUN (RUN2, ... for further ones): results are committed, and where a run directory
    lay on the machine that measured them tells a reader nothing."""
    args = sys.argv[1:]
    names = run_names(*run_dirs)
    for path, name in sorted(names.items(), key=lambda item: -len(item[0])):  # /a/bc before /a/b
        args = [re.sub(rf"(?<![\w/.-]){re.escape(path)}(?![\w.-])", name, arg) for arg in args]
    args = [arg.rstrip("/") if arg.rstrip("/") in names.values() else arg for arg in args]  # RUN/ -> RUN
    return shlex.join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *args])


def run_names(*run_dirs: str | Path) -> dict[str, str]:
    """RUN, RUN2, ... for each distinct run directory, in order of first appearance."""
    names: dict[str, str] = {}
    for run_dir in run_dirs:
        names.setdefault(str(Path(run_dir)), "RUN" if not names else f"RUN{len(names) + 1}")
    return names


def model_specs(specs: list[str], run_dir: str | Path) -> list[tuple[str, str, Path]]:
    """(label, model name, run directory) of each ``NAME`` or ``NAME@RUN_DIR`` argument: NAME is
    read from ``run_dir``, NAME@RUN_DIR from another run directory of the same data. The label
    names that directory as ``command_line`` does (``sasrec@RUN2``), never by its path."""
    parsed = [(name, Path(other) if other else Path(run_dir)) for name, _, other in (s.partition("@") for s in specs)]
    names = run_names(run_dir, *(d for _, d in parsed))
    return [(name if d == Path(run_dir) else f"{name}@{names[str(d)]}", name, d) for name, d in parsed]


def write_results(stem: Path, results: dict, lines: list[str]) -> None:
    """``stem``.json (the figures) and ``stem``.md (the table), each written atomically."""
    write_json(stem.with_suffix(".json"), results)
    write_text(stem.with_suffix(".md"), "\n".join(lines) + "\n")
