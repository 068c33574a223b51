"""How much should the item head count? Validation and test metrics of a model trained with
``recommender.item_head`` for several ``item_score_weight`` values, from one ranking pass.

Ranking ranks the beam's items and the item head's own top items by
log p_SID + w * log p_item (``IntegratedSemanticRecommender.candidate_scores``). Each user's
candidates and both score parts are computed once; every weight re-sorts them. w = 0 is the
SID path alone (over the same candidates), w = inf the item head alone. Training and
``prismrec evaluate`` pick w on validation themselves (``recommender.item_score_weights``); this
script shows every w's test row and popularity groups beside it, and the share of targets among
the candidates (the ceiling of any w).

    python benchmarks/item_head_weight.py runs/beauty --model prism-item-ids-item-head
    # writes benchmarks/results/item-head-weight-<date>.{json,md}

``--mixture`` ranks by log(p_SID + w * p_item) instead: the sum of the two distributions (an item
strong on either path ranks high) rather than their product (it must be strong on both).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmark_io import command_line, machine_info, write_results
from prismrec.config import load_config
from prismrec.evaluation.evaluator import length_batches
from prismrec.evaluation.metrics import GROUPS, metrics_from_positions, popularity_groups, target_positions
from prismrec.recommender.base import Batch
from prismrec.recommender.registry import select_model
from prismrec.recommender.trainer import load_trained

K = 20
SPLITS = ("valid", "test")


@torch.no_grad()
def candidate_parts(model, examples, batch_size: int, device: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, C) candidates, SID log-probabilities and item log-probabilities of every example."""
    model.eval()
    parts = None
    for index in tqdm(length_batches(examples.length, batch_size), desc="ranking", unit="batch", leave=False):
        candidates, sid, item = model.candidate_scores(Batch.from_examples(examples, index, device), K)
        if item is None:
            sys.exit("the model has no item head: train it with --set recommender.item_head=true")
        if parts is None:
            parts = [np.full((len(examples), candidates.shape[1]), fill, dtype=dtype)
                     for fill, dtype in ((-1, np.int64), (-np.inf, np.float32), (-np.inf, np.float32))]
        for array, values in zip(parts, (candidates, sid, item)):
            array[index] = values.cpu().numpy()
    return tuple(parts)


def ranked_by(candidates: np.ndarray, sid: np.ndarray, item: np.ndarray, weight: float,
              mixture: bool = False) -> np.ndarray:
    """Top-K candidates by sid + weight * item, the product of the two distributions (``mixture``:
    by log(p_SID + weight * p_item), their sum; inf: by item, then sid); -1 where none is left."""
    if np.isinf(weight):   # the item head alone; a candidate the beam duplicated stays out
        score = np.where(np.isfinite(sid), item, -np.inf) + 1e-6 * np.nan_to_num(sid, neginf=0.0)
    elif mixture:
        with np.errstate(divide="ignore"):
            score = np.where(np.isfinite(sid), np.logaddexp(sid, np.log(weight) + item), -np.inf)
    else:
        score = sid + weight * item
    order = np.argsort(-score, axis=1, kind="stable")[:, :K]
    ranked = np.take_along_axis(candidates, order, 1)
    return np.where(np.isfinite(np.take_along_axis(score, order, 1)), ranked, -1)


def among_candidates(candidates: np.ndarray, sid: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Whether each example's target is one of its (non-duplicate) candidates: the ceiling of any
    re-ranking, whatever the weight or rule."""
    return ((candidates == targets[:, None]) & np.isfinite(sid)).any(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--model", required=True, help="model directory name, e.g. prism-item-ids-item-head")
    parser.add_argument("--weights", default="0,0.25,0.5,1,2,4,inf", help="comma-separated item_score_weight values")
    parser.add_argument("--mixture", action="store_true",
                        help="rank by log(p_SID + w * p_item) instead of log p_SID + w * log p_item")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="config override KEY=VALUE, as the model was trained with; repeatable")
    parser.add_argument("--out", type=Path, default=None, help="output stem (default: benchmarks/results/...)")
    args = parser.parse_args()
    weights = [float(w) for w in args.weights.split(",")]

    cfg = select_model(load_config(args.run_dir / "config.yaml", args.overrides).recommender, args.model)
    model, ctx, _ = load_trained(args.run_dir, cfg, torch.device(args.device))
    group_of_item = popularity_groups(ctx.data.items["train_count"].to_numpy())
    results: dict[str, dict] = {}
    ceiling: dict[str, dict] = {}  # share of targets among the candidates, per split
    for split in SPLITS:
        examples = ctx.data.examples(split)
        parts = candidate_parts(model, examples, cfg.eval_batch_size, args.device)
        group = group_of_item[examples.target]
        found = among_candidates(parts[0], parts[1], examples.target)
        ceiling[split] = {"candidates": parts[0].shape[1], "all": float(found.mean()),
                          **{g: float(found[group == i].mean()) for i, g in enumerate(GROUPS)}}
        for weight in weights:
            positions = target_positions(ranked_by(*parts, weight, args.mixture), examples.target)
            results.setdefault(str(weight), {})[split] = {
                "all": metrics_from_positions(positions),
                **{g: metrics_from_positions(positions[group == i], ks=(10,)) for i, g in enumerate(GROUPS)}}
        print(f"{split}: ranked", file=sys.stderr)

    best = max(results, key=lambda w: results[w]["valid"]["all"]["ndcg@10"])
    date = dt.date.today().isoformat()
    command = command_line(args.run_dir)
    rule = "log(p_SID + w * p_item)" if args.mixture else "log p_SID + w * log p_item"
    lines = [f"# Item-head weight, {args.model}, {date}", "", f"`{command}`", "", f"Candidates ranked by {rule}.", "",
             f"Selected on validation NDCG@10: w = {best}.", "",
             "| w | valid R@10 | valid N@10 | test R@10 | test N@10 | test R@20 | test N@20 | "
             + " | ".join(f"test R@10 {g}" for g in GROUPS) + " |",
             "|---|---|---|---|---|---|---|" + "---|" * len(GROUPS)]
    for weight, row in results.items():
        v, t = row["valid"]["all"], row["test"]["all"]
        mark = " (selected)" if weight == best else ""
        lines.append(f"| {weight}{mark} | {v['recall@10']:.4f} | {v['ndcg@10']:.4f} | {t['recall@10']:.4f} | "
                     f"{t['ndcg@10']:.4f} | {t['recall@20']:.4f} | {t['ndcg@20']:.4f} | "
                     + " | ".join(f"{row['test'][g]['recall@10']:.4f}" for g in GROUPS) + " |")
    top = ceiling["test"]
    lines += ["", f"Test targets among the {top['candidates']} candidates (the ceiling of any w): "
              + f"{top['all']:.4f}; " + ", ".join(f"{g} {top[g]:.4f}" for g in GROUPS) + "."]
    stem = args.out or Path(__file__).parent / "results" / f"item-head-weight-{date}"
    write_results(stem, {"date": date, "command": command, "model": args.model, "rule": rule, "selected_weight": best,
                         "targets_among_candidates": ceiling,
                         "machine": machine_info(), "results": results}, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
