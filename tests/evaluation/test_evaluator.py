"""Batched ranking of a split and ``evaluate_run``'s artefacts."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from prismrec.config import PipelineConfig
from prismrec.data.dataset import load_prepared
from prismrec.data.synthetic import write_synthetic_run
from prismrec.evaluation.evaluator import evaluate_examples, evaluate_run, rank_examples
from prismrec.evaluation.metrics import GROUPS, METRIC_KEYS, metrics_from_positions, popularity_groups
from prismrec.recommender.base import Batch, SequentialRecommender
from prismrec.recommender.trainer import train_run


class OracleOnEvenTargets(SequentialRecommender):
    """Puts the target first when it is even, else lists other items; records input widths."""

    def __init__(self, num_items):
        super().__init__()
        self.num_items = num_items
        self.widths = []

    def calculate_loss(self, batch):
        return {"loss": torch.zeros(())}

    def rank(self, batch, k):
        self.widths.append((batch.history.shape[1], int(batch.length.max())))
        others = (batch.target[:, None] + 1 + torch.arange(k)) % self.num_items
        first = torch.where(batch.target % 2 == 0, batch.target, others[:, 0])
        items = torch.cat([first[:, None], others[:, 1:]], 1)
        return items, -torch.arange(k, dtype=torch.float32).expand(len(items), k)


@pytest.fixture()
def run(tmp_path):
    return write_synthetic_run(tmp_path / "run", num_users=120)


def test_ranked_lists_come_back_in_example_order_with_trimmed_batches(run):
    examples = load_prepared(run).examples("train")
    model = OracleOnEvenTargets(60)
    ranked = rank_examples(model, examples, k=20, batch_size=32)
    even = examples.target % 2 == 0
    assert np.array_equal(ranked[even, 0], examples.target[even])
    assert not np.any(ranked[~even] == examples.target[~even, None])
    assert all(width == longest for width, longest in model.widths)  # inputs trimmed to the longest history
    assert len({w for w, _ in model.widths}) > 1  # length-bucketed: short batches exist
    m = evaluate_examples(model, examples, batch_size=32)
    assert m["recall@20"] == pytest.approx(even.mean()) and m["ndcg@5"] == pytest.approx(even.mean())


def test_evaluate_run_writes_metrics_for_most_popular(run):
    cfg = PipelineConfig()
    cfg.recommender = dataclasses.replace(cfg.recommender, model="pop", device="cpu")
    train_run(run, cfg)
    results = evaluate_run(run, cfg)
    written = json.loads((run / "eval" / "pop" / "metrics.json").read_text())
    assert written["test"] == results["test"]
    assert set(written["test"]) == set(METRIC_KEYS) and set(written["valid"]) == set(METRIC_KEYS)
    assert set(written["groups"]) == set(GROUPS)
    data = load_prepared(run)
    assert written["users"] == data.num_users
    # the expected numbers, from the training counts directly
    counts = data.items["train_count"].to_numpy()
    top = np.argsort(-counts, kind="stable")[:20]
    test = data.examples("test")
    hit = test.target[:, None] == top[None, :]
    positions = np.where(hit.any(1), hit.argmax(1), -1)
    assert written["test"] == pytest.approx(metrics_from_positions(positions))
    tail = popularity_groups(counts)[test.target] == 2
    assert written["groups"]["long_tail"]["recall@20"] == pytest.approx((positions[tail] >= 0).mean())
    assert "| test |" in (run / "eval" / "pop" / "metrics.md").read_text()
    assert (run / "eval" / "pop" / "manifest.json").exists()


def test_a_new_best_checkpoint_is_reevaluated(run):
    """Resumed training keeps the model's config but can select a new best: evaluation must notice."""
    cfg = PipelineConfig()
    cfg.recommender = dataclasses.replace(cfg.recommender, model="pop", device="cpu")
    train_run(run, cfg)
    first = evaluate_run(run, cfg)
    assert evaluate_run(run, cfg) == first  # unchanged: reused
    best = run / "models" / "pop" / "best.pt"
    checkpoint = torch.load(best, weights_only=False)
    checkpoint["epoch"] = 99  # as if a resumed run had saved a later best
    torch.save(checkpoint, best)
    assert evaluate_run(run, cfg)["checkpoint_epoch"] == 99
