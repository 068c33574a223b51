"""The CPU dropout: same law as nn.Dropout (keep probability, scale, expectation), a
gradient through the kept elements only, reproducible from the seed."""

import math

import pytest
import torch
from torch import nn

from prismrec.recommender.dropout import Dropout, keep_mask

N = 1 << 20


def within_sigmas(observed: float, p: float, n: int, sigmas: float = 5.0) -> bool:
    return abs(observed - p) <= sigmas * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.9])
def test_keep_probability_is_one_minus_rounded_p(p):
    torch.manual_seed(0)
    kept = keep_mask(torch.Size([N]), p).double().mean().item()
    assert within_sigmas(kept, 1 - round(p * 65536) / 65536, N)


def test_mask_elements_drawn_from_one_word_are_independent():
    torch.manual_seed(1)
    m = keep_mask(torch.Size([N]), 0.5).view(-1, 4).double()   # the 4 elements of each 64-bit draw
    for a, b in [(0, 1), (1, 2), (2, 3), (0, 3)]:
        assert within_sigmas((m[:, a] * m[:, b]).mean().item(), 0.25, N // 4)


def test_kept_values_scaled_dropped_values_zero_mean_preserved():
    torch.manual_seed(2)
    drop = Dropout(0.1).train()
    x = torch.rand(N) + 1.0
    y = drop(x)
    kept = y != 0
    scale = 65536 / (65536 - round(0.1 * 65536))
    torch.testing.assert_close(y[kept], x[kept] * scale)
    assert within_sigmas(kept.double().mean().item(), 1 - round(0.1 * 65536) / 65536, N)
    ones = drop(torch.ones(N))
    assert abs(ones.mean().item() - 1.0) < 5 * math.sqrt(0.1 / 0.9 / N)


def test_gradient_flows_through_kept_elements_only():
    torch.manual_seed(3)
    x = torch.randn(64, 32, requires_grad=True)
    y = Dropout(0.3).train()(x)
    y.sum().backward()
    kept = y.detach() != 0
    assert 0 < kept.sum() < kept.numel()
    torch.testing.assert_close(x.grad[kept], torch.full_like(x.grad[kept], 65536 / (65536 - round(0.3 * 65536))))
    assert torch.all(x.grad[~kept] == 0)


def test_same_seed_same_mask_and_draws_advance_the_generator():
    torch.manual_seed(4)
    a, b = keep_mask(torch.Size([1000]), 0.5), keep_mask(torch.Size([1000]), 0.5)
    torch.manual_seed(4)
    assert torch.equal(keep_mask(torch.Size([1000]), 0.5), a)
    assert not torch.equal(a, b)


def test_keeps_dtype_and_shape_under_bfloat16():
    x = torch.randn(3, 5, 7, dtype=torch.bfloat16)
    y = Dropout(0.2).train()(x)
    assert y.dtype == torch.bfloat16 and y.shape == x.shape


def test_eval_p0_and_p1_behave_as_nn_dropout():
    x = torch.randn(10, 10)
    assert torch.equal(Dropout(0.5).eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
    assert isinstance(Dropout(0.1), nn.Dropout)   # same state dict, same repr, same API
