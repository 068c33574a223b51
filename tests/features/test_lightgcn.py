"""LightGCN: training part only, BPR learns, model selection exports the best-validation embeddings."""

import numpy as np
import pytest
import torch

from prismrec.data.dataset import load_prepared
from prismrec.data.synthetic import write_synthetic_run
from prismrec.features import lightgcn
from prismrec.features.lightgcn import (normalized_adjacency, recall_at_k, sample_negatives, train_lightgcn,
                                        training_interactions)

SMALL = dict(dim=16, num_layers=3, lr=0.01, batch_size=256, eval_every=1, patience=50)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    run = write_synthetic_run(tmp_path_factory.mktemp("run"), num_users=300, num_items=120, num_clusters=6)
    return load_prepared(run)


@pytest.fixture(scope="module")
def trained(data):
    inter = training_interactions(data)
    return inter, train_lightgcn(inter, epochs=25, **SMALL)


def test_training_pairs_are_every_item_but_the_last_two(data):
    inter = training_interactions(data)
    got = set(zip(inter.train_users.tolist(), inter.train_items.tolist()))
    want = {(u, int(i)) for u, seq in enumerate(data.sequences["items"]) for i in seq[:-2]}
    assert got == want
    np.testing.assert_array_equal(inter.valid_items, [seq[-2] for seq in data.sequences["items"]])


def test_valid_and_test_pairs_never_enter_the_graph(data):
    inter = training_interactions(data)
    adjacency = normalized_adjacency(inter).toarray()
    U = inter.num_users
    held_out = 0
    for u, seq in enumerate(data.sequences["items"]):
        for item in seq[-2:]:
            if item not in seq[:-2]:  # a held-out item the user never had in training
                held_out += 1
                assert adjacency[u, U + item] == 0 and adjacency[U + item, u] == 0
        for item in seq[:-2]:
            assert adjacency[u, U + item] > 0
    assert held_out > 0.9 * 2 * U  # the check above really covered the held-out pairs
    # symmetric normalisation: A_hat[u, i] = 1 / sqrt(deg u * deg i)
    degree = (adjacency > 0).sum(1)
    u, i = inter.train_users[0], inter.train_items[0]
    assert adjacency[u, U + i] == pytest.approx(1 / np.sqrt(degree[u] * degree[U + i]), rel=1e-5)


def test_changing_test_targets_does_not_change_the_embeddings(data):
    """The test item is never seen: replacing every user's last item leaves training bit-identical."""
    seqs = data.sequences.copy()
    rng = np.random.default_rng(1)
    seqs["items"] = [np.append(s[:-1], rng.integers(data.num_items)).astype(np.int32) for s in seqs["items"]]
    changed = type(data)(items=data.items, sequences=seqs, tags=data.tags, config=data.config)
    a = train_lightgcn(training_interactions(data), epochs=3, **SMALL)
    b = train_lightgcn(training_interactions(changed), epochs=3, **SMALL)
    np.testing.assert_array_equal(a.item_embeddings, b.item_embeddings)
    assert a.curve == b.curve


def test_loss_falls_and_recall_beats_random(data, trained):
    inter, result = trained
    losses = [row["bpr_loss"] for row in result.curve]
    assert losses[-1] < 0.7 * losses[0]
    # a random ranking hits a target with probability k / (number of unmasked candidates)
    candidates = inter.num_items - np.bincount(inter.train_users, minlength=inter.num_users)
    random_recall = np.mean(np.minimum(1.0, 20 / candidates))
    assert result.best_recall > 2 * random_recall


def test_exported_embeddings_are_the_best_validation_ones(data, trained):
    inter, result = trained
    recalls = {row["epoch"]: row["valid_recall@20"] for row in result.curve if "valid_recall@20" in row}
    assert result.best_recall == pytest.approx(max(recalls.values()))
    assert recalls[result.selected_epoch] == pytest.approx(result.best_recall)
    again = recall_at_k(torch.from_numpy(result.user_embeddings), torch.from_numpy(result.item_embeddings),
                        inter.train_matrix(), inter.valid_items)
    assert again == pytest.approx(result.best_recall)


def test_selection_keeps_the_best_evaluation_not_the_last(data, monkeypatch):
    """A scripted validation curve peaks at epoch 2: epoch 2's embeddings are exported."""
    scripted = iter([0.10, 0.50, 0.30, 0.20, 0.40])
    seen = []

    def fake_recall(user_emb, item_emb, *args, **kwargs):
        seen.append(item_emb.clone().numpy())
        return next(scripted)

    monkeypatch.setattr(lightgcn, "recall_at_k", fake_recall)
    result = train_lightgcn(training_interactions(data), epochs=5, **SMALL)
    assert result.selected_epoch == 2 and result.best_recall == 0.50
    np.testing.assert_array_equal(result.item_embeddings, seen[1])
    assert not np.allclose(result.item_embeddings, seen[-1])  # training moved on after the best epoch


def test_early_stopping_after_patience_evaluations(data, monkeypatch):
    scripted = iter([0.3, 0.5, 0.4, 0.4, 0.45, 0.9, 0.9])
    monkeypatch.setattr(lightgcn, "recall_at_k", lambda *a, **k: next(scripted))
    result = train_lightgcn(training_interactions(data), epochs=7, **{**SMALL, "patience": 3})
    assert len(result.curve) == 5 and result.selected_epoch == 2


def test_same_seed_same_embeddings(data):
    inter = training_interactions(data)
    a = train_lightgcn(inter, epochs=2, seed=3, **SMALL)
    b = train_lightgcn(inter, epochs=2, seed=3, **SMALL)
    c = train_lightgcn(inter, epochs=2, seed=4, **SMALL)
    np.testing.assert_array_equal(a.item_embeddings, b.item_embeddings)
    assert not np.allclose(a.item_embeddings, c.item_embeddings)


def test_negatives_are_uniform_items_outside_the_users_training_items(data):
    inter = training_interactions(data)
    keys = inter.train_users * inter.num_items + inter.train_items
    users = np.repeat(inter.train_users, 20)
    neg = sample_negatives(users, keys, inter.num_items, np.random.default_rng(0))
    assert not np.isin(users * inter.num_items + neg, keys).any()
    counts = np.bincount(neg, minlength=inter.num_items)
    assert counts.min() > 0.5 * counts.mean() and counts.max() < 1.5 * counts.mean()


def test_recall_masks_training_items_but_keeps_the_target():
    # one user, item i scores i; the target (item 1) is also a training item; items 3, 4 are masked
    user = torch.ones(1, 1)
    items = torch.arange(5, dtype=torch.float32)[:, None]
    import scipy.sparse as sp

    train = sp.csr_matrix((np.ones(3), ([0, 0, 0], [1, 3, 4])), shape=(1, 5))
    target = np.array([1])
    assert recall_at_k(user, items, train, target, k=1) == 0.0  # item 2 still ranks above
    assert recall_at_k(user, items, train, target, k=2) == 1.0  # items 3, 4 do not count
    assert recall_at_k(user, items, sp.csr_matrix((1, 5)), target, k=3) == 0.0  # unmasked: rank 4


@pytest.mark.parametrize("field, value", [("epochs", 0), ("eval_every", 0), ("patience", -1)])
def test_non_positive_budget_settings_are_clear_errors(data, field, value):
    from prismrec.errors import PrismrecError

    with pytest.raises(PrismrecError, match=f"features.gcn_{field}: expected a positive integer"):
        train_lightgcn(training_interactions(data), **{**SMALL, field: value})
