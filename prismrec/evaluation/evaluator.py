"""The evaluation protocol: batched ranking of a split, and ``evaluate_run`` (SPEC section 6).

Validation is scored during training (model selection); the test split is scored
once, here, at the selected (best-validation) checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from prismrec.artifacts import (build_stage, evaluation_inputs, is_current, read_json, stage_fingerprint_for,
                                write_json, write_text)
from prismrec.data.dataset import Examples
from prismrec.evaluation.metrics import (GROUPS, KS, SELECT_ON, group_metrics, markdown_table, metrics_from_positions,
                                         popularity_groups, target_positions)
from prismrec.recommender.base import Batch, SequentialRecommender

log = logging.getLogger("prismrec")


def length_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Example indices sorted by history length and cut into batches (short inputs stay short)."""
    order = np.argsort(lengths, kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


@torch.no_grad()
def rank_examples(model: SequentialRecommender, examples: Examples, k: int = max(KS), batch_size: int = 512,
                  device: torch.device | str = "cpu", progress: bool = False) -> np.ndarray:
    """(n, k) ranked item_idx of every example (-1 where the model produced fewer than k)."""
    was_training = model.training
    model.eval()
    ranked = np.full((len(examples), k), -1, dtype=np.int64)
    batches = length_batches(examples.length, batch_size)
    for index in tqdm(batches, desc="ranking", unit="batch", disable=None if progress else True, leave=False):
        items, _ = model.rank(Batch.from_examples(examples, index, device), k)
        items = items.cpu().numpy()
        ranked[index, :items.shape[1]] = items[:, :k]
    model.train(was_training)
    return ranked


@torch.no_grad()
def rank_examples_by_weight(model: SequentialRecommender, examples: Examples, rcfg, k: int = max(KS),
                            batch_size: int = 512, device: torch.device | str = "cpu",
                            progress: bool = False) -> dict[float | None, np.ndarray]:
    """``rank_examples`` for every weight of ``rcfg.item_score_weights`` from one candidate pass
    (a model with the item head); else ``{None: rank_examples(...)}``."""
    from prismrec.recommender.isr import rank_candidates

    if not (rcfg.item_score_weights and getattr(model, "has_item_head", False)):
        return {None: rank_examples(model, examples, k, batch_size, device, progress)}
    was_training = model.training
    model.eval()
    ranked = {w: np.full((len(examples), k), -1, dtype=np.int64) for w in rcfg.item_score_weights}
    batches = length_batches(examples.length, batch_size)
    for index in tqdm(batches, desc="ranking", unit="batch", disable=None if progress else True, leave=False):
        parts = model.candidate_scores(Batch.from_examples(examples, index, device), k)
        for weight, out in ranked.items():
            out[index] = rank_candidates(*parts, weight, k)[0].cpu().numpy()
    model.train(was_training)
    return ranked


def best_weight_metrics(results: dict[float | None, dict[str, float]]) -> dict[str, float]:
    """Metrics of the weight with the best validation score (the first on a tie), the weight under
    ``item_score_weight``; the metrics alone for the key None (no item head)."""
    best = max(results, key=lambda w: results[w][SELECT_ON])
    return results[best] if best is None else {**results[best], "item_score_weight": best}


def picked_weight_metrics(model: SequentialRecommender, examples: Examples, rcfg, gather=lambda positions: positions,
                          **kwargs) -> dict[str, float]:
    """Recall/NDCG of ``examples`` at the best item-head weight (``best_weight_metrics``), from one
    candidate pass; ``gather`` joins the target positions of replicas that each ranked a slice."""
    ranked = rank_examples_by_weight(model, examples, rcfg, **kwargs)
    return best_weight_metrics({w: metrics_from_positions(gather(target_positions(r, examples.target)))
                                for w, r in ranked.items()})


def evaluate_examples(model: SequentialRecommender, examples: Examples, **kwargs) -> dict[str, float]:
    """Recall@K / NDCG@K over all examples of a split."""
    return metrics_from_positions(target_positions(rank_examples(model, examples, **kwargs), examples.target))


def evaluate_run(run_dir: str | Path, cfg, force: bool = False) -> dict:
    """Score the selected checkpoint on valid and test; write ``RUN_DIR/eval/<model>/metrics.{json,md}``.

    ``cfg`` is the pipeline config (or its ``recommender`` section).
    """
    from prismrec.recommender.registry import model_dir_name
    from prismrec.device import mixed_precision, resolve_device
    from prismrec.recommender.trainer import load_trained, require_trained

    rcfg = getattr(cfg, "recommender", cfg)
    run_dir = Path(run_dir)
    name = model_dir_name(rcfg)
    model_stage = require_trained(run_dir, rcfg)
    final = run_dir / "eval" / name
    settings = {"ks": list(KS), "eval_batch_size": rcfg.eval_batch_size, "beam_size": rcfg.beam_size}
    if rcfg.item_head:
        settings.update({"item_score_weights": rcfg.item_score_weights} if rcfg.item_score_weights
                        else {"item_score_weight": rcfg.item_score_weight})
    inputs = evaluation_inputs(model_stage)
    if not force and is_current(final, stage_fingerprint_for(settings, inputs)):
        log.info("evaluate %s: unchanged, reusing %s", name, final)
        return read_json(final / "metrics.json")

    device = resolve_device(rcfg.device, "recommender.device")
    model, ctx, checkpoint = load_trained(run_dir, rcfg, device)
    start = time.time()
    kwargs = dict(batch_size=rcfg.eval_batch_size, device=device, progress=True)
    test = ctx.data.examples("test")
    with mixed_precision(device, rcfg.amp, rcfg.amp_cpu):
        # the item head's weight is picked on validation, as the checkpoint was; test is ranked once
        valid = picked_weight_metrics(model, ctx.data.examples("valid"), rcfg, **kwargs)
        if "item_score_weight" in valid:
            model.cfg = dataclasses.replace(model.cfg, item_score_weight=valid.pop("item_score_weight"))
        test_positions = target_positions(rank_examples(model, test, **kwargs), test.target)
    item_group = popularity_groups(ctx.data.items["train_count"].to_numpy())
    results = {
        "model": name,
        "test": metrics_from_positions(test_positions),
        "valid": valid,
        "groups": group_metrics(test_positions, test.target, item_group),
        "users": int(len(test)),
        "group_users": {g: int((item_group[test.target] == i).sum()) for i, g in enumerate(GROUPS)},
        "checkpoint_epoch": checkpoint.get("epoch"),
        **({"item_score_weight": model.cfg.item_score_weight} if getattr(model, "has_item_head", False) else {}),
        "parameters": model.num_parameters(),
        "seconds": round(time.time() - start, 2),
    }
    with build_stage(final, config=settings, inputs=inputs, started=start) as stage:
        write_json(stage / "metrics.json", results)
        write_text(stage / "metrics.md", markdown_table(results, title=results_title(results)))
    return results


def results_title(results: dict) -> str:
    """``prism (epoch 12, item-head weight 4)``: the model, its checkpoint and ranking weight."""
    weight = f", item-head weight {results['item_score_weight']:g}" if "item_score_weight" in results else ""
    return f"{results['model']} (epoch {results.get('checkpoint_epoch')}{weight})"
