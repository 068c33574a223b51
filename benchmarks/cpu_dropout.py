"""torch's ``nn.Dropout`` vs prismrec's CPU ``Dropout`` in training steps of a trained recommender.

On a run directory with a trained model (``models/<name>/best.pt``) it times training steps
(forward, backward, optimiser) on real, length-bucketed training batches, one copy of the
weights per variant, interleaved so that every variant sees the same machine load:
float32 and (on a CPU with native bfloat16) bf16 autocast, each with torch's dropout and with
prismrec's. Also the dropout layer alone on an encoder-FFN-sized tensor.

    python benchmarks/cpu_dropout.py runs/beauty --model prism
    # writes benchmarks/results/cpu-dropout-<date>.{json,md}
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmark_io import command_line, machine_info, write_results
from prismrec.config import load_config
from prismrec.device import cpu_has_native_bf16, mixed_precision
from prismrec.recommender.base import Batch
from prismrec.recommender.dropout import Dropout
from prismrec.recommender.trainer import load_trained, training_batches

CPU = torch.device("cpu")


def use_torch_dropout(model: nn.Module) -> nn.Module:
    """The same model with every prismrec Dropout turned back into torch's (same state)."""
    for module in model.modules():
        if isinstance(module, Dropout):
            module.__class__ = nn.Dropout
    return model


def layer_seconds(layer: nn.Module, x: torch.Tensor, repeats: int = 10) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        layer(x).sum().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--model", default="prism")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per variant")
    parser.add_argument("--out", type=Path, default=None, help="output stem (default: benchmarks/results/...)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.run_dir / "config.yaml", [f"recommender.model={args.model}"]).recommender
    model, ctx, checkpoint = load_trained(args.run_dir, cfg, CPU)
    precisions = {"float32": mixed_precision(CPU, amp=True, amp_cpu=False)}
    if cpu_has_native_bf16():
        precisions["bfloat16"] = mixed_precision(CPU, amp=True, amp_cpu=True)
    variants = {(p, d) for p in precisions for d in ("torch", "prismrec")}
    copies = {v: copy.deepcopy(model).train() for v in sorted(variants)}
    for (precision, dropout), m in copies.items():
        if dropout == "torch":
            use_torch_dropout(m)
    optimisers = {v: torch.optim.AdamW(m.parameters(), lr=cfg.lr) for v, m in copies.items()}

    train = ctx.data.examples("train")
    batches = training_batches(train.length, cfg.batch_size, np.random.default_rng(0))
    picks = np.random.default_rng(1).choice(len(batches), size=args.steps, replace=False)
    step_seconds: dict[tuple, list[float]] = {v: [] for v in copies}
    # a first, untimed pass builds kernels and buffers for every batch shape
    for timed, i in [(False, i) for i in picks] + [(True, i) for i in picks]:
        batch = Batch.from_examples(train, batches[i], CPU)
        for (precision, dropout), m in copies.items():
            start = time.perf_counter()
            with precisions[precision]:
                loss = m.calculate_loss(batch)["loss"]
            optimisers[precision, dropout].zero_grad(set_to_none=True)
            loss.backward()
            optimisers[precision, dropout].step()
            if timed:
                step_seconds[precision, dropout].append(time.perf_counter() - start)
    step = {f"{p}/{d}": statistics.median(v) for (p, d), v in step_seconds.items()}

    # the layer alone, forward + backward, on one encoder feed-forward activation of a full batch
    shape = (cfg.batch_size, ctx.data.config.max_history * getattr(model, "depth", 1), cfg.d_ff)
    layer = {}
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(shape, dtype=dtype, requires_grad=True)
        for name, drop in (("torch", nn.Dropout(cfg.dropout)), ("prismrec", Dropout(cfg.dropout))):
            layer[f"{str(dtype).removeprefix('torch.')}/{name}"] = layer_seconds(drop.train(), x)

    results = {
        "date": dt.date.today().isoformat(),
        "command": command_line(args.run_dir),
        "machine": machine_info(),
        "run": {"model": args.model, "checkpoint_epoch": checkpoint.get("epoch"), "batch_size": cfg.batch_size,
                "encoder_layers": cfg.encoder_layers, "decoder_layers": cfg.decoder_layers, "d_ff": cfg.d_ff,
                "dropout": cfg.dropout},
        "train_step_seconds_median": step,
        "layer_shape": list(shape),
        "layer_forward_backward_seconds_median": layer,
    }
    stem = args.out or Path(__file__).parent / "results" / f"cpu-dropout-{results['date']}"
    lines = [f"# torch vs prismrec dropout on CPU — {args.model}, {results['date']}", "",
             f"`{results['command']}`; {results['machine']['processor']}, {args.threads} torch thread(s), "
             f"torch {torch.__version__}, load average {results['machine']['load_average_1min_at_start']:.2f} at start.",
             "", "| median seconds | torch nn.Dropout | prismrec Dropout | prismrec / torch |", "|---|---|---|---|"]
    for precision in precisions:
        t, p = step[f"{precision}/torch"], step[f"{precision}/prismrec"]
        lines.append(f"| training step, {precision}, {args.steps} batches | {t:.3f} | {p:.3f} | {p / t:.2f} |")
    for dtype in ("float32", "bfloat16"):
        t, p = layer[f"{dtype}/torch"], layer[f"{dtype}/prismrec"]
        lines.append(f"| dropout layer fwd+bwd, {dtype} {tuple(shape)} | {t:.4f} | {p:.4f} | {p / t:.2f} |")
    write_results(stem, results, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
