"""Global collision deduplication (optimal transport onto free SIDs) and TIGER's suffix token."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

from prismrec.tokenizer.dedup import (FreeSet, candidate_sids, deduplicate, reconstruction, sid_keys,
                                      greedy_next_free, sinkhorn_log_plan, split_collisions, tiger_suffix)


@st.composite
def collided_catalogs(draw):
    L = draw(st.integers(2, 3))
    K = draw(st.integers(3, 6))
    n = draw(st.integers(2, min(K ** L, 60)))
    seed = draw(st.integers(0, 10_000))
    spread = draw(st.integers(1, K))  # small spread = many collisions
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, spread, size=(n, L))
    codebooks = rng.normal(size=(L, K, 4)) * (0.5 ** np.arange(L))[:, None, None]
    z = reconstruction(codes, codebooks) + 0.2 * rng.normal(size=(n, 4))
    return codes, z, codebooks


@settings(max_examples=60, deadline=None)
@given(collided_catalogs())
def test_dedup_properties(catalog):
    codes, z, codebooks = catalog
    L, K, _ = codebooks.shape
    result = deduplicate(codes, z, codebooks, neighbourhood=6, beam=1)
    new = result.codes
    # SIDs stay L tokens, in range, and are unique afterwards
    assert new.shape == codes.shape and new.min() >= 0 and new.max() < K
    assert len(np.unique(sid_keys(new, K))) == len(new)
    # only collided items move: exactly all but one item of every duplicated SID
    keys = sid_keys(codes, K)
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    changed = np.flatnonzero((new != codes).any(1))
    assert set(changed) == set(result.moved)
    assert len(result.moved) == int((counts - 1).sum())
    stay = np.ones(len(codes), bool)
    stay[result.moved] = False
    assert set(keys[stay]) == set(keys)  # every SID keeps one of its items
    # the kept item of a group is the one closest to the SID's summed codewords
    dist = np.linalg.norm(z - reconstruction(codes, codebooks), axis=1)
    for group in np.flatnonzero(counts > 1):
        members = np.flatnonzero(inverse == group)
        kept = members[stay[members]]
        assert len(kept) == 1 and dist[kept[0]] == dist[members].min()
    # movers land on SIDs no staying item held
    assert not set(sid_keys(new[result.moved], K)) & set(keys[stay])
    # each mover gets a SID of its neighbourhood whenever the neighbourhoods can hold them all
    if len(result.moved):
        taken = FreeSet(keys[stay], K ** L)
        cand, cost = candidate_sids(z[result.moved], codes[result.moved], codebooks, taken, 6, 1)
        ok = (cand >= 0) & np.isfinite(cost)
        uniq, cols = np.unique(cand[ok], return_inverse=True)
        graph = csr_matrix((np.ones(ok.sum()), (np.nonzero(ok)[0], cols)), shape=(len(cand), max(len(uniq), 1)))
        if (maximum_bipartite_matching(graph, perm_type="column") >= 0).all():
            new_keys = sid_keys(new[result.moved], K)
            assert all(new_keys[i] in set(cand[i][ok[i]]) for i in range(len(cand)))


def test_candidates_are_free_sorted_and_share_the_prefix():
    rng = np.random.default_rng(0)
    L, K = 3, 8
    codebooks = rng.normal(size=(L, K, 5))
    codes = np.array([[1, 2, 3], [1, 2, 3], [4, 0, 0]])
    z = reconstruction(codes, codebooks)
    taken = FreeSet(sid_keys(codes, K), K ** L)
    keys, cost = candidate_sids(z[:1], codes[:1], codebooks, taken, size=10, beam=2)
    cand = np.array([[k // K // K, k // K % K, k % K] for k in keys[0]])
    assert (cand[:, 0] == 1).all()                       # first L-2 codes kept
    assert len(set(cand[:, 1])) <= 3                     # own layer-2 code + 2 alternatives
    assert not set(keys[0]) & set(sid_keys(codes, K))    # free only
    assert (np.diff(cost[0]) >= 0).all()
    true_cost = ((z[0] - reconstruction(cand, codebooks)) ** 2).sum(1)
    assert np.allclose(cost[0], true_cost)               # the semantic cost ||z - z^_s||^2
    # the best candidate is the nearest free last code of the own prefix or better
    own = [((z[0] - reconstruction(np.array([[1, 2, c]]), codebooks)[0]) ** 2).sum() for c in range(K) if c != 3]
    assert cost[0, 0] <= min(own) + 1e-9


def test_sinkhorn_plan_ships_unit_rows_within_unit_capacities():
    rng = np.random.default_rng(1)
    cost = rng.random((30, 5))
    cols = rng.integers(0, 40, size=(30, 5))
    for i in range(30):
        cols[i] = rng.choice(40, 5, replace=False)
    plan = np.exp(sinkhorn_log_plan(cost, cols, 40, epsilon=0.1, iters=3000))
    assert np.allclose(plan.sum(1), 1.0, atol=1e-6)
    load = np.bincount(cols.ravel(), weights=plan.ravel(), minlength=40)
    assert load.max() <= 1.0 + 1e-3


def test_transport_beats_greedy_next_free_on_clustered_latents():
    rng = np.random.default_rng(0)
    L, K, n = 3, 16, 1500
    codebooks = rng.normal(size=(L, K, 8)) * np.array([1.0, 0.5, 0.25])[:, None, None]
    codes = rng.integers(0, K, size=(n, L))
    z = reconstruction(codes, codebooks) + 0.15 * rng.normal(size=(n, 8))
    result = deduplicate(codes, z, codebooks)
    assert len(result.moved) > 50
    greedy = greedy_next_free(codes, result.moved, K)
    assert len(np.unique(sid_keys(greedy, K))) == n  # the baseline resolves them too, only worse
    assert result.mean_extra_distance < result.greedy_mean_extra_distance


def test_split_collisions_keeps_the_closest_item():
    codebooks = np.zeros((2, 2, 1))
    codebooks[0, 1] = 1.0
    codes = np.array([[1, 0], [1, 0], [0, 0]])
    z = np.array([[3.0], [1.1], [0.0]])
    assert split_collisions(codes, z, codebooks).tolist() == [0]


def test_tiger_suffix_makes_sids_unique():
    codes = np.array([[0, 1, 2], [0, 1, 2], [3, 3, 3], [0, 1, 2], [3, 3, 3], [1, 1, 1]])
    out = tiger_suffix(codes, 4)
    assert out.shape == (6, 4)
    assert len({tuple(r) for r in out}) == 6
    assert out[:, 3].tolist() == [0, 1, 0, 2, 1, 0]  # index within the collision group, in item order
    assert (out[:, :3] == codes).all()
