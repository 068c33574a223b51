"""Seconds-long check of a run directory's training and ranking path on one device.

Device time is scarce: before ``gpu_beauty.sh`` starts its long jobs, this builds the model
that ``prismrec train`` would build (same ``--set`` overrides), runs a few training steps of
the real, length-bucketed batches under the trainer's autocast and optimiser, and ranks a
slice of the validation users with the trie-constrained beam search. A broken device path
then fails here, in seconds, with its traceback. The timings it prints (one process alone
on the device) are the solo figures: median step time, the implied epoch, users/s ranked.

    python benchmarks/gpu_preflight.py runs/beauty --device cuda --set recommender.encoder_layers=4
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from prismrec.config import load_config
from prismrec.device import mixed_precision, resolve_device
from prismrec.evaluation.evaluator import rank_examples
from prismrec.recommender.base import Batch
from prismrec.recommender.registry import build_model, load_context
from prismrec.recommender.trainer import training_batches


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--model", default="prism")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override KEY=VALUE")
    parser.add_argument("--steps", type=int, default=12, help="timed training steps (after 3 untimed)")
    parser.add_argument("--rank-users", type=int, default=2048, help="validation users ranked (timed, after a warm-up)")
    parser.add_argument("--tf32", action="store_true", help="float32 matrix products on TF32 tensor cores")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures here as JSON")
    args = parser.parse_args()
    if args.tf32:
        torch.set_float32_matmul_precision("high")

    cfg = load_config(args.run_dir / "config.yaml", [f"recommender.model={args.model}", *args.overrides]).recommender
    device = resolve_device(args.device, "--device")
    ctx = load_context(args.run_dir, cfg)
    torch.manual_seed(0)
    model = build_model(ctx, cfg).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, fused=device.type == "cuda")
    amp = mixed_precision(device, cfg.amp, cfg.amp_cpu)
    train, valid = ctx.data.examples("train"), ctx.data.examples("valid")
    batches = training_batches(train.length, cfg.batch_size, np.random.default_rng(0))

    step_seconds, losses = [], []
    for i in range(3 + args.steps):
        synchronize(device)
        start = time.perf_counter()
        batch = Batch.from_examples(train, batches[i % len(batches)], device)  # a small run has few batches
        with amp:
            loss = model.calculate_loss(batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))  # syncs: the step is timed to its end
        if i >= 3:
            step_seconds.append(time.perf_counter() - start)
    if not all(math.isfinite(x) for x in losses):
        raise SystemExit(f"preflight: non-finite training loss {losses}")

    users = min(args.rank_users, len(valid))
    subset = valid.subset(np.arange(users))
    with amp:
        rank_examples(model, valid.subset(np.arange(min(256, users))), batch_size=cfg.eval_batch_size, device=device)
        synchronize(device)
        start = time.perf_counter()
        ranked = rank_examples(model, subset, batch_size=cfg.eval_batch_size, device=device)
        synchronize(device)
        rank_seconds = time.perf_counter() - start
    if not (ranked[:, 0] >= 0).all():
        raise SystemExit("preflight: some users got no recommendation")

    step = statistics.median(step_seconds)
    figures = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "model": args.model, "overrides": args.overrides, "amp": cfg.amp, "tf32": args.tf32,
        "parameters": model.num_parameters(), "batch_size": cfg.batch_size,
        "train_step_seconds_median": step, "batches_per_epoch": len(batches),
        "epoch_seconds_estimate_alone": step * len(batches), "losses": losses,
        "rank_users": users, "beam": cfg.beam_size, "rank_users_per_second": users / rank_seconds,
        "validation_seconds_estimate": len(valid) / (users / rank_seconds),
    }
    print("preflight " + json.dumps(figures))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
