"""Benchmark of the prepare stage: wall time and peak memory (not a test).

Cases:
  beauty     the shared Amazon 2014 Beauty 5-core files (../shared/data/amazon2014/beauty)
  synthetic  a generated Parquet of N interactions (default 10M; ~1M users, 200k items with
             power-law popularity, an items table with titles, brands and 4-level paths)

Each case runs ``prepare_dataset`` in a fresh subprocess, so the peak resident memory
(``ru_maxrss``) is that of the preparation alone (interpreter and imports included).
Generating the synthetic files is not timed.

    python benchmarks/prepare_benchmark.py                       # both cases, writes results/
    python benchmarks/prepare_benchmark.py --cases beauty --no-save
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
BEAUTY = REPO / ".." / "shared" / "data" / "amazon2014" / "beauty"
TARGETS = {"beauty": (20.0, 2.0), "synthetic": (300.0, 8.0)}   # seconds, GiB (issue 2)


def make_synthetic(directory: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    """Interactions (user_id, item_id, timestamp) and items Parquet files with ``n`` rows."""
    rng = np.random.default_rng(seed)
    lengths = 5 + rng.geometric(1 / 6, size=n // 5) - 1             # mean ~10, min 5
    lengths = lengths[: np.searchsorted(np.cumsum(lengths), n) + 1]
    lengths[-1] -= lengths.sum() - n
    lengths = lengths[lengths > 0]
    users = np.repeat(np.arange(len(lengths)), lengths)
    n_items = 200_000
    items = (n_items * rng.random(n) ** 2.5).astype(np.int64)       # power-law popularity
    times = 1_300_000_000 + rng.integers(0, 10**8, size=n)
    order = rng.permutation(n)                                       # file not grouped by user
    inter = pd.DataFrame({"user_id": pd.Series(users[order]).map("U{:07d}".format),
                          "item_id": pd.Series(items[order]).map("P{:06d}".format),
                          "timestamp": times[order]})
    inter_path = directory / "interactions.parquet"
    inter.to_parquet(inter_path, index=False)
    ids = np.arange(n_items)
    catalog = pd.DataFrame({"item_id": pd.Series(ids).map("P{:06d}".format),
                            "title": pd.Series(ids).map("Product number {}".format),
                            "brand": pd.Series(ids % 997).map("Brand {}".format),
                            "category": [f"Root > Dept {i % 7} > Aisle {i % 53} > Shelf {i % 311}" for i in ids]})
    items_path = directory / "items.parquet"
    catalog.to_parquet(items_path, index=False)
    return inter_path, items_path


def child(case: str, out: Path, paths: list[str]) -> None:
    from prismrec.data.config import DataConfig
    from prismrec.data.prepare import prepare_dataset, summarize

    start = time.perf_counter()
    if case == "beauty":
        prepare_dataset("amazon2014", out, DataConfig(), force=True, reviews=paths[0], meta=paths[1])
    else:
        prepare_dataset("csv", out, DataConfig(), force=True, interactions=paths[0], items=paths[1],
                        drop_category_root=True)
    wall = time.perf_counter() - start
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # KiB on Linux
    s = summarize(out)
    print(json.dumps({"case": case, "wall_seconds": round(wall, 2), "peak_rss_gib": round(peak_gib, 3),
                      "raw_interactions": s["raw"]["interactions"], "users": s["users"], "items": s["items"],
                      "interactions": s["interactions"]}))


def run_case(case: str, paths: list[Path], work: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", case, "--out", str(work / f"run-{case}"), *map(str, paths)]
    result = subprocess.run(cmd, check=True, capture_output=True, text=True)
    row = json.loads(result.stdout.strip().splitlines()[-1])
    wall_target, mem_target = TARGETS[case]
    row["target"] = f"< {wall_target:.0f} s, < {mem_target:.0f} GiB"
    row["meets_target"] = row["wall_seconds"] < wall_target and row["peak_rss_gib"] < mem_target
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="beauty,synthetic")
    ap.add_argument("--interactions", type=int, default=10_000_000, help="size of the synthetic case")
    ap.add_argument("--no-save", action="store_true", help="print only, do not write benchmarks/results/")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.out, args.paths)

    rows = []
    with tempfile.TemporaryDirectory(prefix="prismrec-bench-") as tmp:
        work = Path(tmp)
        for case in args.cases.split(","):
            if case == "beauty":
                paths = [BEAUTY / "reviews_Beauty_5.json.gz", BEAUTY / "meta_Beauty.json.gz"]
            elif case == "synthetic":
                t = time.perf_counter()
                paths = list(make_synthetic(work, args.interactions))
                print(f"generated {args.interactions:,} synthetic interactions in {time.perf_counter() - t:.1f} s",
                      file=sys.stderr)
            else:
                raise SystemExit(f"unknown case {case!r}: expected beauty or synthetic")
            rows.append(run_case(case, paths, work))
            print(json.dumps(rows[-1]), file=sys.stderr)

    machine = {"python": platform.python_version(), "cpu_count": __import__("os").cpu_count(),
               "processor": platform.processor() or platform.machine(), "numpy": np.__version__,
               "pandas": pd.__version__}
    lines = ["| case | raw interactions | users | items | interactions | wall (s) | peak RSS (GiB) | target | met |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['raw_interactions']:,} | {r['users']:,} | {r['items']:,} | {r['interactions']:,} | "
              f"{r['wall_seconds']} | {r['peak_rss_gib']} | {r['target']} | {'yes' if r['meets_target'] else 'NO'} |"
              for r in rows]
    table = "\n".join(lines)
    print(table)
    if not args.no_save:
        date = time.strftime("%Y-%m-%d")
        out = REPO / "benchmarks" / "results" / f"prepare-{date}.md"
        out.write_text(f"# prepare benchmark, {date}\n\nCommand: `python benchmarks/prepare_benchmark.py`\n\n"
                       f"Machine: {json.dumps(machine)}\n\n{table}\n\n"
                       "Wall time = `prepare_dataset` in a fresh process (reading, k-core, tables, Parquet "
                       "writes); peak RSS = that process's `ru_maxrss`, interpreter and imports included.\n")
        (out.with_suffix(".json")).write_text(json.dumps({"date": date, "machine": machine, "results": rows}, indent=2) + "\n")
        print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
