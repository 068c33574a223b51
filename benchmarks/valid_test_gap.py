"""Where do models lose from validation to test? Per-user diagnostics of trained models.

The generative models of a run keep 71-76% of their validation NDCG@10 on test, SASRec 81%
(benchmarks/results/beauty-*.md). This ranks the validation and test users once per model
and splits Recall@10 / NDCG@10 by what differs between the two splits: the target's
popularity group, whether the target was ever a training target (cold), whether the
user's history holds it already (repeat), and the history length.

    python benchmarks/valid_test_gap.py runs/beauty --model prism --model sasrec@runs/beauty-sasrec
    # writes benchmarks/results/valid-test-gap-<date>.{json,md}
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np
import torch

from benchmark_io import command_line, machine_info, model_specs, write_results
from prismrec.config import load_config
from prismrec.evaluation.evaluator import rank_examples
from prismrec.evaluation.metrics import GROUPS, metrics_from_positions, popularity_groups, target_positions
from prismrec.recommender.registry import select_model
from prismrec.recommender.trainer import load_trained

def slices(examples, train_count: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean user masks of the splits' differences."""
    group = popularity_groups(train_count)[examples.target]
    out = {"all": np.ones(len(examples), dtype=bool)}
    for g, name in enumerate(GROUPS):
        out[f"target {name}"] = group == g
    out["target cold (0 training interactions)"] = train_count[examples.target] == 0
    out["target repeats a history item"] = (examples.history == examples.target[:, None]).any(1)
    out["history < 5 items"] = examples.length < 5
    out["history >= 5 items"] = examples.length >= 5
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--model", dest="models", action="append", required=True,
                        help="model directory name (prism, prism-seed1, prism-no-dsi, tiger, sasrec, ...), NAME@RUN_DIR for another "
                             "run directory of the same data; repeatable")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override KEY=VALUE")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="output stem (default: benchmarks/results/...)")
    args = parser.parse_args()
    specs = model_specs(args.models, args.run_dir)
    labels = [label for label, _, _ in specs]

    rows, shares = {}, {}
    for model_label, name, run_dir in specs:
        cfg = select_model(load_config(run_dir / "config.yaml", args.overrides).recommender, name)
        model, ctx, checkpoint = load_trained(run_dir, cfg, torch.device(args.device))
        train_count = ctx.data.items["train_count"].to_numpy()
        for split in ("valid", "test"):
            examples = ctx.data.examples(split)
            ranked = rank_examples(model, examples, batch_size=cfg.eval_batch_size, device=args.device, progress=True)
            positions = target_positions(ranked, examples.target)
            for label, mask in slices(examples, train_count).items():
                shares.setdefault(label, {})[split] = float(mask.mean())
                if mask.any():
                    m = metrics_from_positions(positions[mask], ks=(10,))
                    rows.setdefault(label, {})[(model_label, split)] = (m["recall@10"], m["ndcg@10"])
        print(f"{model_label}: ranked valid and test", file=sys.stderr)

    date = dt.date.today().isoformat()
    results = {"date": date, "command": command_line(args.run_dir, *(run_dir for _, _, run_dir in specs)),
               "machine": machine_info(), "models": labels,
               "slices": {label: {"share": shares[label],
                                  **{f"{m}/{s}": {"recall@10": v[0], "ndcg@10": v[1]} for (m, s), v in r.items()}}
                          for label, r in rows.items()}}
    lines = [f"# Validation vs test by slice — {', '.join(labels)}, {date}", "",
             f"`{results['command']}`", "",
             "| slice | share valid / test | " + " | ".join(f"{m} N@10 valid / test (ratio)" for m in labels) + " |",
             "|---|---|" + "---|" * len(labels)]
    for label, r in rows.items():
        if any((m, split) not in r for m in labels for split in ("valid", "test")):
            continue  # a slice with no users in one of the splits
        cells = []
        for m in labels:
            v, t = r[(m, "valid")][1], r[(m, "test")][1]
            cells.append(f"{v:.4f} / {t:.4f} ({t / v:.2f})" if v > 0 else f"{v:.4f} / {t:.4f}")
        lines.append(f"| {label} | {shares[label]['valid']:.3f} / {shares[label]['test']:.3f} | " + " | ".join(cells) + " |")
    stem = args.out or Path(__file__).parent / "results" / f"valid-test-gap-{date}"
    write_results(stem, results, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
