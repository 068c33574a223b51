"""Efficiency of the Integrated Semantic Recommender on a Beauty-sized catalog.

Measures (paper section 4.7, SPEC section 7):
  * total and activated parameters (top-2 of 3 experts active);
  * batched inference throughput (users/s) on CPU, beam 20, top-20;
  * batch-1 latency with beam 20 (CUDA when available, else CPU), on CUDA also replayed
    from a CUDA graph (``GraphedRanker``, what serving uses there);
  * one training step (batch 128) and the implied epoch time on Beauty's 131,413
    training examples;
  * the last two with DSI's experts routed (the CPU default) and dense (the GPU default).

The catalog is synthetic but Beauty-shaped: 12,101 items, random unique SIDs with
3 x 256 codes, random 384-d content and 64-d collaborative features, full
20-item histories. Model quality does not matter here, only the cost.

    python benchmarks/isr_latency.py                       # writes benchmarks/results/isr_latency-<date>-<device>.json
    python benchmarks/isr_latency.py --device cuda --amp
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from benchmark_io import machine_info
from prismrec.artifacts import write_json
from prismrec.data.config import DataConfig
from prismrec.data.dataset import PreparedData
from prismrec.data.synthetic import synthetic_tables
from prismrec.device import mixed_precision
from prismrec.features.store import ItemFeatures
from prismrec.recommender.base import Batch, ModelContext
from prismrec.recommender.config import RecommenderConfig
from prismrec.recommender.graphs import GraphedRanker
from prismrec.recommender.isr import IntegratedSemanticRecommender
from prismrec.tokenizer.store import SemanticIds

BEAUTY_ITEMS = 12_101
BEAUTY_TRAIN_EXAMPLES = 131_413  # 198,502 interactions - 3 x 22,363 users (valid, test, first item)


def beauty_sized_context(num_items: int = BEAUTY_ITEMS, codes_per_layer: int = 256, layers: int = 3) -> ModelContext:
    rng = np.random.default_rng(0)
    items, sequences, tags = synthetic_tables(num_users=64, num_items=num_items, num_clusters=50)
    tag_lists = [["<pad>"] + tags[tags["level"] == lv].sort_values("tag_idx")["tag"].tolist() for lv in range(1, 4)]
    data = PreparedData(items=items, sequences=sequences, tags=tag_lists, config=DataConfig())
    flat = rng.choice(codes_per_layer ** layers, size=num_items, replace=False)
    codes = np.stack(np.unravel_index(flat, [codes_per_layer] * layers), axis=1).astype(np.int64)
    sids = SemanticIds(codes=codes, codebooks=rng.normal(size=(layers, codes_per_layer, 32)).astype(np.float32),
                       item_ids=items["item_id"].to_numpy())
    features = ItemFeatures(content=rng.normal(size=(num_items, 384)).astype(np.float32),
                            collab=rng.normal(size=(num_items, 64)).astype(np.float32), tag_embeddings=[])
    return ModelContext(data=data, features=features, sids=sids)


def random_batch(num_users: int, num_items: int, device: str, history: int = 20, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(history=torch.randint(0, num_items, (num_users, history), generator=g).to(device),
                 time_bucket=torch.randint(0, 32, (num_users, history), generator=g).to(device),
                 length=torch.full((num_users,), history, dtype=torch.long, device=device),
                 target=torch.randint(0, num_items, (num_users,), generator=g).to(device))


def timed(fn, repeats: int, device: str) -> list[float]:
    """Wall seconds of each call (after one warm-up call)."""
    fn()
    out = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA, or a CPU with native bf16: see benchmarks/cpu_precision.py)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--beam", type=int, default=20)
    parser.add_argument("--batch-users", type=int, default=256, help="users per batch for the throughput run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--latency-repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    ctx = beauty_sized_context()
    torch.manual_seed(0)
    cfg = RecommenderConfig(beam_size=args.beam)
    model = IntegratedSemanticRecommender.from_context(ctx, cfg).eval()
    tiger = IntegratedSemanticRecommender.from_context(ctx, replace(cfg, use_dsi=False, use_ssa=False, use_ats=False))
    results: dict = {
        "date": dt.date.today().isoformat(),
        "command": "python benchmarks/isr_latency.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in (None, False, 0)),
        "machine": machine_info(),
        "catalog": {"items": ctx.num_items, "sid": "3 x 256 (random, unique)", "history": 20},
        "parameters": model.num_parameters(),
        "parameters_without_dsi_ssa_ats": tiger.num_parameters(),
        "beam": args.beam,
    }

    def autocast(device: str):  # the trainer's rule: on a CPU only where bf16 is native
        return mixed_precision(torch.device(device), args.amp, amp_cpu=args.amp)

    # ---- batched CPU throughput
    cpu_model = model.to("cpu")
    batch = random_batch(args.batch_users, ctx.num_items, "cpu")
    with torch.inference_mode():
        secs = timed(lambda: cpu_model.rank(batch, 20), args.repeats, "cpu")
    results["cpu_throughput"] = {"batch_users": args.batch_users, "seconds_per_batch_median": statistics.median(secs),
                                 "users_per_second": args.batch_users / statistics.median(secs)}

    # ---- batch-1 latency and a training step on the chosen device
    device = args.device
    model = model.to(device)
    if device == "cuda":
        results["machine"]["gpu"] = torch.cuda.get_device_name()
    one = random_batch(1, ctx.num_items, device, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    train_batch = random_batch(128, ctx.num_items, device, seed=2)

    def step():
        with autocast(device):
            loss = model.calculate_loss(train_batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    # DSI's experts: routed (CPU default) vs dense (GPU default, no host sync); the default's
    # figures are the headline ones
    default = "dense" if device == "cuda" else "routed"
    results["experts"] = {"default": default}
    for mode in ("routed", "dense"):
        model.dsi.dense_experts = mode == "dense"
        model.eval()
        with torch.inference_mode(), autocast(device):
            secs = timed(lambda: model.rank(one, 20), args.latency_repeats, device)
        latency = {"device": device, "amp": args.amp, "median": 1000 * statistics.median(secs),
                   "p90": 1000 * float(np.percentile(secs, 90))}
        model.train()
        per_step = statistics.median(timed(step, args.repeats, device))
        train = {"device": device, "batch": 128, "seconds_median": per_step,
                 "beauty_epoch_minutes_estimate": per_step * np.ceil(BEAUTY_TRAIN_EXAMPLES / 128) / 60}
        results["experts"][mode] = {"batch1_latency_ms_median": latency["median"], "train_step_seconds_median": per_step}
        if mode == default:
            results["batch1_latency_ms"], results["train_step"] = latency, train
    model.dsi.dense_experts = None

    # ---- batch-1 latency replayed from a CUDA graph (prismrec.recommender.graphs, what
    # `prismrec serve` / `recommend` use on a GPU), bf16 and float32, checked against eager
    if device == "cuda":
        model.eval()
        results["cuda_graph"] = {}
        for precision, bf16 in (("bfloat16", True), ("float32", False)):
            ranker = GraphedRanker(model, bf16=bf16)
            ranker(one, 20)  # a shape's first request ranks eagerly, its second captures and replays
            graphed_items, _ = ranker(one, 20)
            assert ranker.num_captured == 1
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                eager_items, _ = model.rank(one, 20)
            secs = timed(lambda: ranker(one, 20), args.latency_repeats, device)
            results["cuda_graph"][precision] = {
                "batch1_latency_ms_median": 1000 * statistics.median(secs),
                "p90": 1000 * float(np.percentile(secs, 90)),
                "items_equal_eager": bool(torch.equal(graphed_items, eager_items))}

    text = json.dumps(results, indent=2)
    print(text)
    out = args.out or Path(__file__).parent / "results" / f"isr_latency-{results['date']}-{device}.json"
    write_json(out, results)


if __name__ == "__main__":
    main()
