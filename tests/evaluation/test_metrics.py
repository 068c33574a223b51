import math

import numpy as np

from prismrec.evaluation.metrics import (METRIC_KEYS, group_metrics, markdown_table, metrics_from_positions,
                                         popularity_groups, target_positions)


def ranked_lists():
    rng = np.random.default_rng(0)
    ranked = np.stack([rng.permutation(np.arange(100, 200))[:20] for _ in range(4)])
    targets = np.array([ranked[0, 0], ranked[1, 3], ranked[2, 12], 7])  # rank 1, rank 4, rank 13, missing
    return ranked, targets


def test_positions_and_missing_target():
    ranked, targets = ranked_lists()
    assert target_positions(ranked, targets).tolist() == [0, 3, 12, -1]
    # padding (-1) never matches a target
    assert target_positions(np.array([[-1, -1]]), np.array([5])).tolist() == [-1]


def test_metrics_equal_hand_computed_values():
    ranked, targets = ranked_lists()
    m = metrics_from_positions(target_positions(ranked, targets))
    assert set(m) == set(METRIC_KEYS)
    assert m["recall@5"] == 2 / 4 and m["recall@10"] == 2 / 4 and m["recall@20"] == 3 / 4
    assert math.isclose(m["ndcg@5"], (1 + 1 / math.log2(5)) / 4)
    assert math.isclose(m["ndcg@10"], (1 + 1 / math.log2(5)) / 4)
    assert math.isclose(m["ndcg@20"], (1 + 1 / math.log2(5) + 1 / math.log2(14)) / 4)


def test_average_is_over_all_users():
    # one hit at rank 1 among 10 users: the 9 misses count as zeros
    m = metrics_from_positions(np.array([0] + [-1] * 9))
    assert m["recall@10"] == 0.1 and m["ndcg@10"] == 0.1


def test_popularity_groups_equal_item_counts_most_popular_first():
    counts = np.array([5, 0, 3, 3, 9, 1])
    assert popularity_groups(counts).tolist() == [0, 2, 1, 1, 0, 2]
    g = popularity_groups(np.arange(10))  # 10 items: 4 / 3 / 3
    assert np.bincount(g).tolist() == [4, 3, 3]
    assert set(np.flatnonzero(g == 0)) == {9, 8, 7, 6}


def test_group_metrics_use_only_the_users_of_each_group():
    item_group = popularity_groups(np.array([5, 0, 3, 3, 9, 1]))  # popular {0,4}, medium {2,3}, tail {1,5}
    targets = np.array([4, 0, 2, 1, 5])
    positions = np.array([0, -1, 1, 4, -1])
    g = group_metrics(positions, targets, item_group)
    assert g["popular"]["recall@5"] == 0.5 and g["popular"]["ndcg@5"] == 0.5
    assert g["medium"]["recall@5"] == 1.0 and math.isclose(g["medium"]["ndcg@5"], 1 / math.log2(3))
    assert g["long_tail"]["recall@5"] == 0.5 and math.isclose(g["long_tail"]["ndcg@5"], 0.5 / math.log2(6))


def test_markdown_table_lists_splits_and_groups():
    m = metrics_from_positions(np.array([0, -1]))
    table = markdown_table({"test": m, "valid": m, "groups": {"popular": m, "medium": m, "long_tail": m},
                            "users": 2, "group_users": {"popular": 1, "medium": 1, "long_tail": 0}})
    lines = table.strip().splitlines()
    assert lines[0].startswith("| split | users | recall@5")
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["test", "valid", "test popular", "test medium",
                                                                  "test long_tail"]
    assert "| test | 2 | 0.5000 |" in table
