import numpy as np
import torch

from prismrec.baselines.sasrec import SASRec
from prismrec.recommender.base import Batch


def batch_of(history, target):
    h = torch.tensor(history)
    return Batch(h, torch.zeros_like(h), (h >= 0).sum(1), torch.tensor(target))


def test_trimming_and_padding_do_not_change_scores():
    torch.manual_seed(0)
    model = SASRec(30, max_len=6, dim=16, blocks=2, heads=2, dropout=0.3).eval()
    full = batch_of([[-1, -1, -1, 4, 5, 6], [1, 2, 3, 4, 5, 6]], [7, 7])
    short = batch_of([[4, 5, 6]], [7])
    a = model.scores(full.history)
    assert torch.allclose(a[0], model.scores(short.history)[0], atol=1e-5)
    assert torch.isfinite(a).all()


def test_causal_only_the_history_matters_and_order_matters():
    torch.manual_seed(0)
    model = SASRec(30, max_len=6, dim=16, dropout=0.0).eval()
    a = model.scores(torch.tensor([[1, 2, 3]]))
    b = model.scores(torch.tensor([[3, 2, 1]]))
    assert not torch.allclose(a, b)  # positions are used


def test_rank_is_top_k_of_full_softmax_scores_without_history_masking():
    torch.manual_seed(0)
    model = SASRec(30, max_len=6, dim=16, dropout=0.0).eval()
    batch = batch_of([[-1, 1, 2], [3, 4, 5]], [0, 0])
    items, scores = model.rank(batch, 10)
    full = model.scores(batch.history)
    expected = torch.argsort(full, dim=1, descending=True)[:, :10]
    assert torch.equal(items, expected) and torch.all(scores[:, :-1] >= scores[:, 1:])
    loss = model.calculate_loss(batch)["loss"]
    assert torch.isclose(loss, torch.nn.functional.cross_entropy(full, batch.target))


def test_full_softmax_training_fits_a_deterministic_next_item():
    torch.manual_seed(0)
    model = SASRec(20, max_len=4, dim=16, dropout=0.0)
    history = torch.tensor([[i, (i + 1) % 20, (i + 2) % 20] for i in range(20)])
    batch = batch_of(history.tolist(), [(i + 3) % 20 for i in range(20)])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = model.calculate_loss(batch)["loss"].item()
    for _ in range(100):
        opt.zero_grad()
        model.calculate_loss(batch)["loss"].backward()
        opt.step()
    model.eval()
    items, _ = model.rank(batch, 1)
    assert model.calculate_loss(batch)["loss"].item() < first / 5
    assert (items[:, 0] == batch.target).float().mean() > 0.9
