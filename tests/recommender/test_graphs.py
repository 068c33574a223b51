"""GraphedRanker: per-shape input tensors and replay, checked eagerly on a CPU.

Capture itself needs a GPU; ``benchmarks/isr_latency.py`` checks there that the replayed
ranking equals the eager one. Here the same code path runs with ``capture=False``.
"""

import threading

import numpy as np
import pytest
import torch

from prismrec.recommender.base import Batch
from prismrec.recommender.graphs import GraphedRanker
from prismrec.recommender.inference import Recommender
from test_isr import assert_valid_ranking, batch_of, build, ctx  # noqa: F401  (ctx is a fixture)


def test_equals_eager_rank_for_each_shape_and_new_inputs(ctx):
    model = build(ctx).eval()
    ranker = GraphedRanker(model, capture=False)
    examples = ctx.data.examples("valid")
    for rows in (np.arange(4), np.arange(4, 8), np.arange(1), np.arange(9, 10)):
        batch = Batch.from_examples(examples, rows, "cpu")
        items, scores = ranker(batch, 5)
        expected_items, expected_scores = model.rank(batch, 5)
        assert torch.equal(items, expected_items)
        torch.testing.assert_close(scores, expected_scores)
        assert_valid_ranking(items, scores, ctx.num_items)
    # one entry per (k, shapes): the second batch of 4 and the second single history reuse one
    shapes = {(k, tuple(b.history.shape)) for k, b in [(5, Batch.from_examples(examples, r, "cpu"))
                                                      for r in (np.arange(4), np.arange(4, 8), np.arange(1), np.arange(9, 10))]}
    assert ranker.num_graphs == len(shapes)
    ranker(batch_of(ctx, "valid", 4), 3)  # another k is another graph
    assert ranker.num_graphs == len(shapes) + 1


def test_reused_inputs_do_not_leak_between_requests(ctx):
    model = build(ctx).eval()
    ranker = GraphedRanker(model, capture=False)
    examples = ctx.data.examples("valid")
    lengths = examples.length
    i, j = np.flatnonzero(lengths == lengths[0])[:2]  # two histories of one width: one graph
    a, b = (Batch.from_examples(examples, np.array([r]), "cpu") for r in (i, j))
    first, second = ranker(a, 5)[0], ranker(b, 5)[0]
    assert ranker.num_graphs == 1
    assert torch.equal(first, model.rank(a, 5)[0]) and torch.equal(second, model.rank(b, 5)[0])
    assert torch.equal(ranker(a, 5)[0], first)


def test_concurrent_requests_get_their_own_answers(ctx):
    model = build(ctx).eval()
    ranker = GraphedRanker(model, capture=False)
    examples = ctx.data.examples("valid")
    batches = [Batch.from_examples(examples, np.array([i]), "cpu") for i in range(6)]
    expected = [model.rank(b, 5)[0] for b in batches]
    results: dict[int, torch.Tensor] = {}

    def serve(i: int) -> None:
        results[i] = ranker(batches[i], 5)[0]

    threads = [threading.Thread(target=serve, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(torch.equal(results[i], expected[i]) for i in range(6))


def test_nothing_is_captured_without_capture(ctx):
    ranker = GraphedRanker(build(ctx), capture=False)
    batch = batch_of(ctx, "valid", 2)
    for _ in range(3):
        ranker(batch, 5)
    assert ranker.num_graphs == 1 and ranker.num_captured == 0


def test_capture_needs_a_cuda_model(ctx):
    with pytest.raises(ValueError, match="CUDA"):
        GraphedRanker(build(ctx), capture=True)


def test_recommender_single_histories_share_one_graph_per_width(ctx):
    """What serving does on a GPU, with the graph path run eagerly: the same answers as
    eager ranking for every k, one cached shape for all k up to the beam width."""
    model = build(ctx).eval()  # TINY: beam 8
    eager = Recommender(model, ctx, {}, "prism", torch.device("cpu"))
    graphed = Recommender(model, ctx, {}, "prism", torch.device("cpu"))
    graphed.graphed = GraphedRanker(model, capture=False)
    ids = ctx.data.items["item_id"].astype(str).tolist()
    history = ids[:3]
    for k in (1, 5, 8):
        assert graphed.recommend(history, k) == eager.recommend(history, k)
    assert graphed.graphed.num_graphs == 1
    assert graphed.recommend(history, 12) == eager.recommend(history, 12)  # wider than the beam: its own
    assert graphed.graphed.num_graphs == 2
    many = [ids[:2], ids[3:6]]
    assert graphed.recommend_many(many, 5) == eager.recommend_many(many, 5)  # batches stay eager
    assert graphed.graphed.num_graphs == 2
