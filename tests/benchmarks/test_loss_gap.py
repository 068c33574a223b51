"""``benchmarks/loss_gap.py`` averages a model's loss parts over examples and popularity thirds:
checked against the loss of one batch holding them all, on a tiny SASRec."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from loss_gap import loss_by_group, loss_parts
from prismrec.baselines.sasrec import SASRec
from prismrec.data.dataset import Examples
from prismrec.recommender.base import Batch


def tiny_examples(n: int = 23, items: int = 9, width: int = 5) -> Examples:
    rng = np.random.default_rng(3)
    length = rng.integers(1, width + 1, n)
    history = np.where(np.arange(width)[None, :] >= width - length[:, None], rng.integers(0, items, (n, width)), -1)
    return Examples(history=history, time_bucket=np.zeros_like(history), length=length,
                    target=rng.integers(0, items, n), user=np.arange(n))


def test_loss_parts_is_the_mean_over_examples_whatever_the_batches():
    torch.manual_seed(0)
    model = SASRec(9, max_len=5, dim=8, dropout=0.5).train()
    examples = tiny_examples()
    # one batch of everything, in eval mode: the reference
    model.eval()
    with torch.no_grad():
        whole = float(model.calculate_loss(Batch.from_examples(examples, np.arange(len(examples)), "cpu"))["loss"])
    model.train()
    # batches of 4 (the last one of 3), each a mean: weighting by batch size recovers the overall mean
    assert loss_parts(model, examples, batch_size=4)["loss"] == pytest.approx(whole, rel=1e-5)
    assert model.training  # left as it was found


def test_loss_by_group_splits_by_the_targets_popularity_third():
    torch.manual_seed(0)
    model = SASRec(9, max_len=5, dim=8, dropout=0.0).eval()
    examples = tiny_examples()
    item_group = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    out = loss_by_group(model, examples, item_group, batch_size=7)
    with torch.no_grad():
        scores = model.scores(torch.as_tensor(examples.history))
        per_example = F.cross_entropy(scores, torch.as_tensor(examples.target), reduction="none").numpy()
    for g, name in enumerate(("popular", "medium", "long_tail")):
        mask = item_group[examples.target] == g
        assert out[name]["examples"] == mask.sum()
        assert out[name]["loss"] == pytest.approx(per_example[mask].mean(), rel=1e-5)
    assert out["all"]["examples"] == len(examples)
    assert out["all"]["loss"] == pytest.approx(per_example.mean(), rel=1e-5)
