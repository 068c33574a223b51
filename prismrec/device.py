"""Which torch device a stage runs on (``auto`` = CUDA when a GPU is visible)."""

from __future__ import annotations

from pathlib import Path

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


def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bfloat16 in hardware (AMX / AVX512-BF16); Linux only."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def mixed_precision(device: torch.device, amp: bool, amp_cpu: bool = False) -> torch.autocast:
    """The bfloat16 autocast context of the recommenders (weights stay float32).

    On CUDA when ``amp``; on a CPU when ``amp_cpu`` and the CPU computes bfloat16 in hardware
    (emulated bfloat16 is slower than float32). Both are off by default, for measured reasons:
    on an H100 these small models are bound by kernel launches, and autocast's cast kernels
    make a Beauty training step 1.6x slower and beam-search ranking 10-30x slower than float32
    (benchmarks/results/gpu-step-variants-*.md); on an AMX CPU a training step takes x0.71-0.81
    of the float32 time and batched ranking x0.69, but batch-1 beam search is slower
    (benchmarks/results/cpu-precision-*.md), so there it is an opt-in.
    """
    on = (device.type == "cuda" and amp) or (device.type == "cpu" and amp_cpu and cpu_has_native_bf16())
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=on)
