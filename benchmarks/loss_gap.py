"""Does a model over-fit, and on which targets? Its training loss (each part ``calculate_loss``
returns, without dropout) on a sample of training examples against the same on the validation
and test examples, split by the target's popularity third.

The ranking metrics say how much a model trails SASRec-CE on the medium and long-tail thirds
(benchmarks/results/valid-test-gap-*); the losses say whether it fits those targets in training
and fails to generalise (a large train / validation gap), or never fits them. SASRec's loss is
the cross-entropy at the last position, the same quantity as the ISR's ``item`` part.

    python benchmarks/loss_gap.py runs/beauty --model prism-item-ids-item-head --model sasrec@runs/beauty-sasrec
    # writes benchmarks/results/loss-gap-<date>.{json,md}
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmark_io import command_line, machine_info, model_specs, write_results
from prismrec.config import load_config
from prismrec.evaluation.evaluator import length_batches
from prismrec.evaluation.metrics import GROUPS, popularity_groups
from prismrec.recommender.base import Batch
from prismrec.recommender.registry import select_model
from prismrec.recommender.trainer import load_trained

SPLITS = ("train", "valid", "test")


@torch.no_grad()
def loss_parts(model, examples, batch_size: int, device: str = "cpu") -> dict[str, float]:
    """Mean of every loss part over ``examples``, in eval mode (no dropout, no gate noise): each
    part is a per-example mean within a batch, so batches are weighted by their size."""
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    for index in length_batches(examples.length, batch_size):
        parts = model.calculate_loss(Batch.from_examples(examples, index, device))
        for name, value in parts.items():
            sums[name] = sums.get(name, 0.0) + float(value) * len(index)
    model.train(was_training)
    return {name: total / len(examples) for name, total in sums.items()}


def loss_by_group(model, examples, item_group: np.ndarray, batch_size: int, device: str = "cpu") -> dict[str, dict]:
    """``loss_parts`` over the examples whose target is in each popularity group, and over all of
    them (the groups' means weighted by their example counts: each example is in one group)."""
    group = item_group[examples.target]
    out = {}
    for g, name in enumerate(GROUPS):
        index = np.flatnonzero(group == g)
        if len(index):
            out[name] = {"examples": len(index), **loss_parts(model, examples.subset(index), batch_size, device)}
    parts = [p for p in next(iter(out.values()), {}) if p != "examples"]  # calculate_loss's order
    return {"all": {"examples": len(examples),
                    **{p: sum(v[p] * v["examples"] for v in out.values()) / len(examples) for p in parts}},
            **out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--model", dest="models", action="append", required=True,
                        help="model directory name, NAME@RUN_DIR for another run directory of the same data; repeatable")
    parser.add_argument("--train-sample", type=int, default=20000, help="training examples drawn (seed 0)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override KEY=VALUE")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="output stem (default: benchmarks/results/...)")
    args = parser.parse_args()

    specs = model_specs(args.models, args.run_dir)
    results: dict[str, dict] = {}
    for spec, name, run_dir in tqdm(specs, desc="models", unit="model"):
        cfg = select_model(load_config(run_dir / "config.yaml", args.overrides).recommender, name)
        model, ctx, _ = load_trained(run_dir, cfg, torch.device(args.device))
        item_group = popularity_groups(ctx.data.items["train_count"].to_numpy())
        results[spec] = {}
        for split in SPLITS:
            examples = ctx.data.examples(split)
            if split == "train" and len(examples) > args.train_sample:
                examples = examples.subset(np.sort(np.random.default_rng(0).choice(
                    len(examples), args.train_sample, replace=False)))
            results[spec][split] = loss_by_group(model, examples, item_group, cfg.eval_batch_size, args.device)
        print(f"{name}: losses of {', '.join(SPLITS)}", file=sys.stderr)

    date = dt.date.today().isoformat()
    command = command_line(args.run_dir, *(run_dir for _, _, run_dir in specs))
    lines = [f"# Training loss on train / valid / test targets, {date}", "", f"`{command}`", "",
             "Mean of each loss part in eval mode (no dropout); train = a sample of "
             f"{args.train_sample} training examples. SASRec's `loss` and the ISR's `item` are the same "
             "quantity (full-softmax cross-entropy of the target item).", "",
             "| model | part | slice | train | valid | test | valid - train |", "|---|---|---|---|---|---|---|"]
    for label, splits in results.items():
        parts = [p for p in splits["train"]["all"] if p != "examples"]
        for part in parts:
            for slice_name in ("all", *GROUPS):
                if slice_name not in splits["train"]:
                    continue
                v = [splits[s].get(slice_name, {}).get(part, float("nan")) for s in SPLITS]
                lines.append(f"| {label} | {part} | {slice_name} | {v[0]:.3f} | {v[1]:.3f} | {v[2]:.3f} | {v[1] - v[0]:+.3f} |")
    stem = args.out or Path(__file__).parent / "results" / f"loss-gap-{date}"
    write_results(stem, {"date": date, "command": command, "models": list(results), "train_sample": args.train_sample,
                         "machine": machine_info(), "results": results}, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
