"""Device and precision selection."""

import pytest
import torch

import prismrec.device as device_module
from prismrec.device import mixed_precision, resolve_device
from prismrec.errors import PrismrecError

CPU = torch.device("cpu")


def matmul_dtype(ctx) -> torch.dtype:
    a = torch.ones(4, 4)
    with ctx:
        return (a @ a).dtype


@pytest.mark.parametrize("native", [True, False])
def test_cpu_bf16_only_when_asked_for_and_native(monkeypatch, native):
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native)
    assert matmul_dtype(mixed_precision(CPU, amp=True)) == torch.float32  # `amp` is CUDA's: CPU bf16 is opt-in
    expected = torch.bfloat16 if native else torch.float32  # emulated bf16 is slower: never used
    assert matmul_dtype(mixed_precision(CPU, amp=False, amp_cpu=True)) == expected
    assert matmul_dtype(mixed_precision(CPU, amp=True, amp_cpu=True)) == expected


def test_recommender_precision_defaults_to_float32():
    from prismrec.recommender.config import RecommenderConfig

    cfg = RecommenderConfig()
    assert not cfg.amp and not cfg.amp_cpu


def test_unknown_device_names_the_field():
    with pytest.raises(PrismrecError, match="recommender.device: expected auto, cpu or cuda"):
        resolve_device("gpu0", "recommender.device")
