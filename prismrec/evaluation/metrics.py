"""Ranking metrics of the evaluation protocol (SPEC section 6).

Full-item ranking, leave-one-out, one target per user. From each user's ranked list
we only need the 0-based position of the target (or -1 when the model did not put
it in the list); Recall@K (= hit rate) and NDCG@K = 1/log2(rank+1) (1-based rank)
are then averaged over **all** users, so a user whose target is missing counts 0.
"""

from __future__ import annotations

import numpy as np

KS = (5, 10, 20)
METRIC_KEYS = tuple(f"{m}@{k}" for m in ("recall", "ndcg") for k in KS)
GROUPS = ("popular", "medium", "long_tail")


SELECT_ON = "ndcg@10"  # the validation metric that selects checkpoints and the item-head weight


def target_positions(ranked: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based position of each target in its ranked list (B, k), -1 where absent."""
    ranked = np.asarray(ranked)
    targets = np.asarray(targets)
    hit = ranked == targets[:, None]
    return np.where(hit.any(1), hit.argmax(1), -1)


def metrics_from_positions(positions: np.ndarray, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """Recall@K and NDCG@K averaged over every user (empty input gives zeros)."""
    positions = np.asarray(positions)
    found = positions >= 0
    gain = np.where(found, 1.0 / np.log2(np.maximum(positions, 0) + 2.0), 0.0)
    out = {}
    for metric in ("recall", "ndcg"):
        for k in ks:
            inside = found & (positions < k)
            values = inside.astype(np.float64) if metric == "recall" else np.where(inside, gain, 0.0)
            out[f"{metric}@{k}"] = float(values.mean()) if len(values) else 0.0
    return out


def popularity_groups(train_count: np.ndarray) -> np.ndarray:
    """(N,) group of every item: 0 popular, 1 medium, 2 long tail.

    Items are sorted by training popularity (most popular first, ties by item
    index) and cut into three groups of (as near as possible) equal item count.
    """
    order = np.argsort(-np.asarray(train_count), kind="stable")
    groups = np.empty(len(order), dtype=np.int64)
    for g, chunk in enumerate(np.array_split(order, len(GROUPS))):
        groups[chunk] = g
    return groups


def group_metrics(positions: np.ndarray, targets: np.ndarray, item_group: np.ndarray) -> dict[str, dict[str, float]]:
    """Metrics over the users whose target falls in each popularity group."""
    target_group = item_group[np.asarray(targets)]
    return {name: metrics_from_positions(np.asarray(positions)[target_group == g]) for g, name in enumerate(GROUPS)}


def markdown_table(results: dict, title: str = "") -> str:
    """Markdown table of a metrics.json dict (splits and popularity groups as rows)."""
    head = "| split | users | " + " | ".join(METRIC_KEYS) + " |"
    rule = "|---|---:|" + "---:|" * len(METRIC_KEYS)
    rows = []
    counts = {"test": results.get("users", ""), "valid": results.get("users", ""), **results.get("group_users", {})}
    for name, values in [("test", results["test"]), ("valid", results["valid"]),
                         *((f"test {g}", results["groups"][g]) for g in GROUPS)]:
        users = counts.get(name.replace("test ", ""), "")
        rows.append(f"| {name} | {users} | " + " | ".join(f"{values[k]:.4f}" for k in METRIC_KEYS) + " |")
    return "\n".join(([f"### {title}", ""] if title else []) + [head, rule, *rows]) + "\n"
