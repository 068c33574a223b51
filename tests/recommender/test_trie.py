"""The tensorised SID trie and trie-constrained beam search, against brute force."""

from collections import defaultdict

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prismrec.recommender.trie import SemanticIdTrie, beam_search, constrained_log_probs


def random_codes(num_items: int, vocab: list[int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    flat = rng.choice(int(np.prod(vocab)), size=num_items, replace=False)
    return np.stack(np.unravel_index(flat, vocab), axis=1).astype(np.int64)


def prefix_logits_fn(vocab: list[int], batch_size: int, seed: int = 0):
    """Deterministic logits that depend on the user and the whole prefix (a fake decoder)."""
    gen = torch.Generator().manual_seed(seed)
    tables = [torch.randn(batch_size, 997, v, generator=gen) * 2 for v in vocab]

    def key(prefix: torch.Tensor) -> torch.Tensor:  # (..., d) -> (...) a hash of the prefix
        weights = torch.tensor([31 ** i for i in range(prefix.shape[-1])], dtype=torch.long)
        return (prefix * weights).sum(-1) % 997

    def step(tokens: torch.Tensor, d: int, parent=None) -> torch.Tensor:
        user = torch.arange(tokens.shape[0])[:, None].expand(-1, tokens.shape[1])
        return tables[d][user, key(tokens)]

    return step, key, tables


def exhaustive_scores(codes: np.ndarray, vocab, tables, key, batch_size: int, temperature_fn=None) -> np.ndarray:
    """Score every item's full SID one by one in Python: sum of log-softmax over valid children."""
    children = defaultdict(set)
    for row in codes:
        for d in range(len(vocab)):
            children[tuple(row[:d])].add(int(row[d]))
    scores = np.zeros((batch_size, len(codes)))
    for u in range(batch_size):
        for i, row in enumerate(codes):
            total = 0.0
            for d in range(len(vocab)):
                prefix = tuple(row[:d])
                logits = tables[d][u, int(key(torch.tensor(row[:d], dtype=torch.long)))].double()
                if temperature_fn is not None:
                    logits = logits / float(temperature_fn(torch.tensor(float(len(children[prefix])))))
                valid = sorted(children[prefix])
                total += float(logits[row[d]] - torch.logsumexp(logits[valid], 0))
            scores[u, i] = total
    return scores


def test_branching_factors_and_item_paths_match_brute_force():
    codes = random_codes(40, [4, 5, 3], seed=1)
    trie = SemanticIdTrie(codes, [4, 5, 3])
    children = defaultdict(set)
    for row in codes:
        for d in range(3):
            children[tuple(row[:d])].add(int(row[d]))
    expected = np.array([[len(children[tuple(row[:d])]) for d in range(3)] for row in codes])
    np.testing.assert_array_equal(trie.item_branching().numpy(), expected)
    # following the transitions along an item's SID ends at that item
    node = torch.zeros(len(codes), dtype=torch.long)
    for d in range(3):
        node = trie.transitions(d)[node, torch.as_tensor(codes[:, d])]
        assert (node >= 0).all()
    np.testing.assert_array_equal(node.numpy(), np.arange(len(codes)))
    # and no other path exists: number of valid leaves = number of items
    assert int((trie.transitions(2) >= 0).sum()) == len(codes)


def test_rejects_duplicate_sids():
    with pytest.raises(ValueError, match="unique"):
        SemanticIdTrie(np.array([[0, 1], [0, 1]]), [2, 2])


def test_constrained_log_probs_normalise_over_valid_children_only():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    valid = torch.tensor([[True, False, True], [False, False, False]])
    logp = constrained_log_probs(logits, valid)
    assert torch.allclose(logp[0, [0, 2]].exp().sum(), torch.tensor(1.0))
    assert logp[0, 1] == float("-inf") and torch.isneginf(logp[1]).all()  # dead row stays -inf, not NaN


@pytest.mark.parametrize("use_temperature", [False, True])
def test_beam_search_equals_exhaustive_scoring(use_temperature):
    vocab, batch = [3, 4, 3], 3
    codes = random_codes(17, vocab, seed=2)
    trie = SemanticIdTrie(codes, vocab)
    step, key, tables = prefix_logits_fn(vocab, batch)
    temperature_fn = (lambda n: 0.5 + 0.5 * torch.exp(-0.5 * n / 2.0)) if use_temperature else None
    items, scores = beam_search(step, trie, batch, beam_size=17, temperature_fn=temperature_fn)
    reference = exhaustive_scores(codes, vocab, tables, key, batch, temperature_fn)
    order = np.argsort(-reference, axis=1, kind="stable")
    np.testing.assert_array_equal(items.numpy(), order)
    np.testing.assert_allclose(scores.numpy(), np.take_along_axis(reference, order, 1), rtol=1e-5, atol=1e-5)


def test_narrow_beam_returns_valid_sorted_items_and_pads_when_catalog_is_small():
    vocab = [3, 3, 3]
    codes = random_codes(10, vocab, seed=3)
    trie = SemanticIdTrie(codes, vocab)
    step, _, _ = prefix_logits_fn(vocab, 4, seed=1)
    items, scores = beam_search(step, trie, 4, beam_size=4)
    assert items.shape == (4, 4) and (items >= 0).all()
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    assert all(len(set(row.tolist())) == 4 for row in items)
    items, scores = beam_search(step, trie, 4, beam_size=14)  # more beams than items
    assert (items[:, 10:] == -1).all() and torch.isneginf(scores[:, 10:]).all()
    assert all(sorted(row[:10].tolist()) == list(range(10)) for row in items)


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_property_random_code_matrices(data):
    depth = data.draw(st.integers(1, 4))
    vocab = [data.draw(st.integers(1, 5)) for _ in range(depth)]
    capacity = int(np.prod(vocab))
    num_items = data.draw(st.integers(1, min(capacity, 40)))
    codes = random_codes(num_items, vocab, seed=data.draw(st.integers(0, 10**6)))
    trie = SemanticIdTrie(codes, vocab)
    # branching factors of each depth's nodes add up to the number of next-depth prefixes
    for d in range(depth):
        next_prefixes = len(np.unique(codes[:, : d + 1], axis=0))
        assert int(trie.branching(d).sum()) == next_prefixes
    beam = data.draw(st.integers(1, num_items + 3))
    batch = data.draw(st.integers(1, 3))
    step, _, _ = prefix_logits_fn(vocab, batch, seed=data.draw(st.integers(0, 100)))
    items, scores = beam_search(step, trie, batch, beam)
    assert items.shape == scores.shape == (batch, beam)
    real = items >= 0
    assert int(real.sum(1).min()) == min(beam, num_items)   # every beam filled while items remain
    assert torch.isfinite(scores[real]).all() and torch.isneginf(scores[~real]).all()
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    for row in items:
        got = row[row >= 0].tolist()
        assert len(set(got)) == len(got)                       # no item twice
    # the beams' items are valid SIDs: each maps back to its own code row through the trie
    node = torch.zeros_like(items[real])
    for d in range(depth):
        node = trie.transitions(d)[node, torch.as_tensor(codes)[items[real], d]]
    assert torch.equal(node, items[real])
