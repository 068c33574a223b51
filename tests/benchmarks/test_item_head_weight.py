"""``benchmarks/item_head_weight.py`` re-ranks the candidates by the product of the SID and item
distributions, or with ``--mixture`` by their sum: hand-computed orders on one user."""

import numpy as np

from item_head_weight import among_candidates, ranked_by

CANDIDATES = np.array([[10, 11, 12, 13]])
SID = np.array([[np.log(0.6), np.log(0.3), np.log(0.1), -np.inf]])  # 13 is a duplicate: -inf, never ranked
ITEM = np.log(np.array([[0.05, 0.25, 0.7, 0.9]]))


def test_product_ranks_by_p_sid_times_p_item():
    # 0.6 * 0.05 = 0.03, 0.3 * 0.25 = 0.075, 0.1 * 0.7 = 0.07
    assert ranked_by(CANDIDATES, SID, ITEM, 1.0).tolist() == [[11, 12, 10, -1]]
    # w = 0: the SID path alone
    assert ranked_by(CANDIDATES, SID, ITEM, 0.0).tolist() == [[10, 11, 12, -1]]


def test_mixture_ranks_by_p_sid_plus_w_p_item():
    # 0.6 + 0.05 = 0.65, 0.3 + 0.25 = 0.55, 0.1 + 0.7 = 0.8
    assert ranked_by(CANDIDATES, SID, ITEM, 1.0, mixture=True).tolist() == [[12, 10, 11, -1]]
    # w = 0.1: 0.605, 0.325, 0.17 (the SID order); w = 0 is the SID path alone, as for the product
    assert ranked_by(CANDIDATES, SID, ITEM, 0.1, mixture=True).tolist() == [[10, 11, 12, -1]]
    assert ranked_by(CANDIDATES, SID, ITEM, 0.0, mixture=True).tolist() == [[10, 11, 12, -1]]


def test_infinite_weight_ranks_by_the_item_head_alone():
    assert ranked_by(CANDIDATES, SID, ITEM, np.inf).tolist() == [[12, 11, 10, -1]]
    assert ranked_by(CANDIDATES, SID, ITEM, np.inf, mixture=True).tolist() == [[12, 11, 10, -1]]


def test_a_target_counts_among_the_candidates_only_where_its_sid_score_is_finite():
    candidates = np.array([[10, 11, 12, 13], [10, 11, 12, 13], [10, 11, 12, 13]])
    sid = np.vstack([SID] * 3)
    # 11 is a candidate; 13 only as a duplicate (-inf), which no ranking keeps; 99 is not one
    assert among_candidates(candidates, sid, np.array([11, 13, 99])).tolist() == [True, False, False]
