"""Batched inference throughput (users/s) of a trained model on a run's test split.

Ranks every test user's history (top-20, full catalog for SASRec, beams for the
generative models) with length-bucketed batches of several sizes, as the evaluator
does, and reports users per second plus the training time per epoch from the
model's train_log.json.

    python benchmarks/recommender_throughput.py runs/beauty-sasrec --model sasrec --device cpu
    python benchmarks/recommender_throughput.py RUN --model prism --set recommender.item_head=true ... \
        --users 4096 --batch-sizes 1 256 --batch1-users 200
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from prismrec.cli_options import run_config
from prismrec.evaluation.evaluator import rank_examples
from prismrec.recommender.registry import model_dir_name
from prismrec.recommender.trainer import load_trained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--model", default="sasrec")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 128, 512])
    parser.add_argument("--batch1-users", type=int, default=1000, help="users timed at batch size 1")
    parser.add_argument("--users", type=int, default=0, help="test users timed at the larger batch sizes (0 = all)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="config override picking the trained model, as for `prismrec evaluate --set`")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    cfg = run_config(args.run_dir, None, args.sets, save=False)
    rcfg = dataclasses.replace(cfg.recommender, model=args.model, device=args.device)
    model, ctx, checkpoint = load_trained(args.run_dir, rcfg, args.device)
    test = ctx.data.examples("test")
    if args.users:
        test = test.subset(torch.arange(min(args.users, len(test))).numpy())
    results = {}
    with torch.inference_mode():
        for bs in args.batch_sizes:
            examples = test if bs > 1 else test.subset(torch.arange(min(args.batch1_users, len(test))).numpy())
            rank_examples(model, examples.subset(torch.arange(min(bs * 2, len(examples))).numpy()), batch_size=bs,
                          device=args.device)  # warm-up
            start = time.perf_counter()
            rank_examples(model, examples, batch_size=bs, device=args.device)
            seconds = time.perf_counter() - start
            results[f"batch_{bs}"] = {"users": len(examples), "seconds": round(seconds, 3),
                                      "users_per_s": round(len(examples) / seconds, 1),
                                      "ms_per_batch": round(1000 * seconds / -(-len(examples) // bs), 3)}
            print(f"batch {bs:>4}: {len(examples)} users in {seconds:.2f}s = {len(examples) / seconds:,.0f} users/s")
    log = json.loads((args.run_dir / "models" / model_dir_name(rcfg) / "train_log.json").read_text())
    full = [e["seconds"] for e in log["epochs"] if not e.get("partial")]
    report = {
        "model": model_dir_name(rcfg), "run_dir": args.run_dir.name, "sets": args.sets, "device": args.device,
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "processor": platform.processor(), "torch": torch.__version__, "parameters": model.num_parameters(),
        "checkpoint_epoch": checkpoint.get("epoch"), "throughput": results,
        "train_seconds_per_epoch_median": statistics.median(full) if full else None,
        "train_epochs": len(log["epochs"]),
    }
    out = args.out or Path(__file__).parent / "results" / f"{report['model']}_throughput-{dt.date.today()}-{args.device}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
