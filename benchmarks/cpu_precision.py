"""float32 vs bfloat16 autocast for a trained recommender on a CPU (``recommender.amp_cpu``).

On a run directory with a trained model (``models/<name>/best.pt``) it measures, with one
torch thread by default:
  * the median time of a training step (forward, backward, optimiser) on real, length-bucketed
    training batches, each precision on its own copy of the trained weights, interleaved so that
    both see the same machine load;
  * the time to rank ``--users`` validation examples (beam search, top-20) and the metrics and
    top-10 overlap of both rankings (does bf16 change what is recommended?).

    python benchmarks/cpu_precision.py runs/beauty --model prism
    # writes benchmarks/results/cpu-precision-<date>.{json,md}

Only meaningful on a CPU that computes bfloat16 natively (AMX / AVX512-BF16); elsewhere it stops.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmark_io import command_line, machine_info, write_results
from prismrec.config import load_config
from prismrec.device import cpu_has_native_bf16, mixed_precision
from prismrec.evaluation.evaluator import rank_examples
from prismrec.evaluation.metrics import metrics_from_positions, target_positions
from prismrec.recommender.base import Batch
from prismrec.recommender.trainer import load_trained, training_batches

CPU = torch.device("cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--model", default="prism")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20, help="training steps per precision")
    parser.add_argument("--users", type=int, default=4096, help="validation examples to rank")
    parser.add_argument("--out", type=Path, default=None, help="output stem (default: benchmarks/results/...)")
    args = parser.parse_args()
    if not cpu_has_native_bf16():
        sys.exit("this CPU has no native bfloat16 (AMX / AVX512-BF16): recommender.amp_cpu would stay off")
    torch.set_num_threads(args.threads)
    cfg = load_config(args.run_dir / "config.yaml", [f"recommender.model={args.model}"]).recommender
    model, ctx, checkpoint = load_trained(args.run_dir, cfg, CPU)
    contexts = {"float32": mixed_precision(CPU, amp=True, amp_cpu=False),
                "bfloat16": mixed_precision(CPU, amp=True, amp_cpu=True)}

    # ---- training steps: one copy of the trained model and optimiser per precision
    train = ctx.data.examples("train")
    batches = training_batches(train.length, cfg.batch_size, np.random.default_rng(0))
    picks = np.random.default_rng(1).choice(len(batches), size=args.steps, replace=False)
    copies = {name: copy.deepcopy(model).train() for name in contexts}
    optimisers = {name: torch.optim.AdamW(m.parameters(), lr=cfg.lr) for name, m in copies.items()}
    step_seconds: dict[str, list[float]] = {name: [] for name in contexts}
    losses: dict[str, list[float]] = {name: [] for name in contexts}
    # a first, untimed pass: the first step at a new batch shape builds kernels and buffers (in
    # training the ~20 bucketed shapes are all seen within the first steps of the first epoch)
    for timed, i in [(False, i) for i in picks] + [(True, i) for i in picks]:
        batch = Batch.from_examples(train, batches[i], CPU)
        for name, ctx_manager in contexts.items():
            torch.manual_seed(int(i))  # same dropout masks for both
            start = time.perf_counter()
            with ctx_manager:
                loss = copies[name].calculate_loss(batch)["loss"]
            optimisers[name].zero_grad(set_to_none=True)
            loss.backward()
            optimisers[name].step()
            if timed:
                step_seconds[name].append(time.perf_counter() - start)
                losses[name].append(loss.item())

    # ---- ranking validation examples (a small warm-up first, for the same reason)
    valid = ctx.data.examples("valid")
    index = np.sort(np.random.default_rng(2).choice(len(valid), size=min(args.users, len(valid)), replace=False))
    subset = valid.subset(index)
    model.eval()
    ranked, rank_seconds, metrics = {}, {}, {}
    for name, ctx_manager in contexts.items():
        with ctx_manager:
            rank_examples(model, valid.subset(index[:64]), batch_size=cfg.eval_batch_size, device=CPU)
        start = time.perf_counter()
        with ctx_manager:
            ranked[name] = rank_examples(model, subset, batch_size=cfg.eval_batch_size, device=CPU)
        rank_seconds[name] = time.perf_counter() - start
        metrics[name] = metrics_from_positions(target_positions(ranked[name], subset.target))
    overlap = np.mean([len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(ranked["float32"], ranked["bfloat16"])])

    results = {
        "date": dt.date.today().isoformat(),
        "command": command_line(args.run_dir),
        "machine": machine_info(),
        "run": {"model": args.model, "checkpoint_epoch": checkpoint.get("epoch"), "batch_size": cfg.batch_size,
                "encoder_layers": cfg.encoder_layers, "decoder_layers": cfg.decoder_layers, "d_ff": cfg.d_ff,
                "beam_size": cfg.beam_size},
        "train_step_seconds_median": {k: statistics.median(v) for k, v in step_seconds.items()},
        "train_loss_mean": {k: float(np.mean(v)) for k, v in losses.items()},
        "rank_users": len(index),
        "rank_seconds": rank_seconds,
        "rank_metrics": metrics,
        "top10_overlap": float(overlap),
    }
    stem = args.out or Path(__file__).parent / "results" / f"cpu-precision-{results['date']}"
    step, rank = results["train_step_seconds_median"], rank_seconds
    lines = [f"# float32 vs bfloat16 autocast on CPU — {args.model}, {results['date']}", "",
             f"`{results['command']}`; {results['machine']['processor']}, {args.threads} torch thread(s), "
             f"torch {torch.__version__}, load average {results['machine']['load_average_1min_at_start']:.2f} at start.",
             "", "| | float32 | bfloat16 | bf16 / fp32 |", "|---|---|---|---|",
             f"| training step, median of {args.steps} (s) | {step['float32']:.3f} | {step['bfloat16']:.3f} | "
             f"{step['bfloat16'] / step['float32']:.2f} |",
             f"| rank {len(index)} validation users (s) | {rank['float32']:.1f} | {rank['bfloat16']:.1f} | "
             f"{rank['bfloat16'] / rank['float32']:.2f} |"]
    for key in ("recall@10", "ndcg@10", "recall@20", "ndcg@20"):
        lines.append(f"| {key} of those users | {metrics['float32'][key]:.4f} | {metrics['bfloat16'][key]:.4f} | |")
    lines += ["", f"Top-10 lists agree on {100 * overlap:.1f}% of their items."]
    write_results(stem, results, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
