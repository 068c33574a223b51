"""How much does each model get out of the user's most recent item? By target popularity.

Ranks the test targets twice: from the test history (the validation item is its most recent
item) and from the validation history (the same user without that item). The gain between
the two is what a model makes of the one item it has never seen in this user's sequence —
where SASRec-CE and the generative models differ most on Beauty.

    python benchmarks/recent_item_value.py runs/beauty --model prism --model sasrec@runs/beauty-sasrec
    # writes benchmarks/results/recent-item-value-<date>.{json,md}
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import torch

from benchmark_io import command_line, machine_info, write_results
from prismrec.config import load_config
from prismrec.data.dataset import Examples
from prismrec.evaluation.evaluator import rank_examples
from prismrec.evaluation.metrics import GROUPS, metrics_from_positions, popularity_groups, target_positions
from prismrec.recommender.registry import select_model
from prismrec.recommender.trainer import load_trained

HISTORIES = ("test history", "without the validation item")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--model", dest="models", action="append", required=True,
                        help="model directory name, NAME@RUN_DIR for another run directory of the same data; repeatable")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="config override KEY=VALUE for every model, as the models were trained with; repeatable")
    parser.add_argument("--out", type=Path, default=None, help="output stem (default: benchmarks/results/...)")
    args = parser.parse_args()

    results: dict[str, dict] = {}
    for spec in args.models:
        name, _, other_run = spec.partition("@")
        run_dir = Path(other_run) if other_run else args.run_dir
        cfg = select_model(load_config(run_dir / "config.yaml", args.overrides).recommender, name)
        model, ctx, _ = load_trained(run_dir, cfg, torch.device(args.device))
        valid, test = ctx.data.examples("valid"), ctx.data.examples("test")
        # the validation history is the test history without its most recent item
        without = Examples(valid.history, valid.time_bucket, valid.length, test.target, test.user)
        group = popularity_groups(ctx.data.items["train_count"].to_numpy())[test.target]
        for label, examples in zip(HISTORIES, (test, without)):
            ranked = rank_examples(model, examples, batch_size=cfg.eval_batch_size, device=args.device, progress=True)
            positions = target_positions(ranked, examples.target)
            results.setdefault(spec, {})[label] = {
                "all": metrics_from_positions(positions, ks=(10,)),
                **{g: metrics_from_positions(positions[group == i], ks=(10,)) for i, g in enumerate(GROUPS)}}
        print(f"{spec}: ranked", file=sys.stderr)

    date = dt.date.today().isoformat()
    command = command_line(args.run_dir)
    lines = [f"# What the most recent item is worth — test Recall@10 by target popularity, {date}", "",
             f"`{command}`", "",
             "| model | history | R@10 all | N@10 all | " + " | ".join(f"R@10 {g}" for g in GROUPS) + " |",
             "|---|---|---|---|" + "---|" * len(GROUPS)]
    for name, by_history in results.items():
        for label, row in by_history.items():
            lines.append(f"| {name} | {label} | {row['all']['recall@10']:.4f} | {row['all']['ndcg@10']:.4f} | "
                         + " | ".join(f"{row[g]['recall@10']:.4f}" for g in GROUPS) + " |")
        gain = [by_history[HISTORIES[0]][k]["recall@10"] / max(by_history[HISTORIES[1]][k]["recall@10"], 1e-12)
                for k in ("all", *GROUPS)]
        lines.append(f"| {name} | gain from the item | x{gain[0]:.2f} | | " + " | ".join(f"x{g:.2f}" for g in gain[1:]) + " |")
    stem = args.out or Path(__file__).parent / "results" / f"recent-item-value-{date}"
    write_results(stem, {"date": date, "command": command, "machine": machine_info(), "results": results}, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
