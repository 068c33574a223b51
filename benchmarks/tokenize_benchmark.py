"""Benchmark of the tokenize stage (not a test).

Cases:
  beauty  PRISM, TIGER and the three ablations (--no-acd / --no-hsa / --no-dhr) on a run
          directory that already holds Beauty's data/ and features/ stages. Each variant runs
          as `prismrec tokenize` in a fresh subprocess (wall time, peak RSS of the child); the
          SID quality table (paper Table 3 rows beside it) is the result.
  dedup   global deduplication of N synthetic items (default 1,000,000) with 5% collisions on
          3 x 256 codebooks: wall time, moved items, OT vs greedy "next free last code".

    python benchmarks/tokenize_benchmark.py --run runs/beauty            # both, writes results/
    python benchmarks/tokenize_benchmark.py --cases dedup --no-save
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {"tokenizer": [], "tokenizer-tiger": ["--mode", "tiger"], "tokenizer-prism-no-acd": ["--no-acd"],
            "tokenizer-prism-no-hsa": ["--no-hsa"], "tokenizer-prism-no-dhr": ["--no-dhr"]}


def bench_beauty(run: Path, sets: list[str], force: bool) -> dict:
    from prismrec.artifacts import read_json
    from prismrec.tokenizer.quality import markdown_table

    out = {"run": str(run), "variants": {}}
    for name, flags in VARIANTS.items():
        cmd = [sys.executable, "-m", "prismrec.cli", "tokenize", str(run), *flags,
               *[a for s in sets for a in ("--set", s)], *(["--force"] if force else [])]
        start = time.time()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.time() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # max over children so far (KiB)
        manifest = read_json(run / name / "manifest.json")
        out["variants"][name] = {"wall_seconds": round(wall, 1), "stage_seconds": manifest["wall_seconds"],
                                 "peak_rss_gib_max_so_far": round(peak / 2 ** 20, 2),
                                 "quality": read_json(run / name / "quality.json"),
                                 "dedup": read_json(run / name / "dedup.json"),
                                 "config": manifest["config"]["tokenizer"]}
        print(f"{name}: {wall:.1f} s (stage {manifest['wall_seconds']:.1f} s), peak RSS <= {peak / 2 ** 20:.2f} GiB",
              flush=True)
    features = run / "features" / "manifest.json"
    if features.exists():
        out["features_wall_seconds"] = read_json(features).get("wall_seconds")
    out["table"] = markdown_table({k: v["quality"] for k, v in out["variants"].items()})
    print(out["table"])
    return out


def synthetic_collisions(n: int, rate: float, seed: int = 0, L: int = 3, K: int = 256, d: int = 32):
    """Codebooks with shrinking scale per layer, latents near their SID, and n*rate items
    duplicating the SID of another item."""
    from prismrec.tokenizer.dedup import keys_to_codes, reconstruction

    rng = np.random.default_rng(seed)
    codebooks = (rng.normal(size=(L, K, d)) * (0.5 ** np.arange(L))[:, None, None]).astype(np.float32)
    unique = rng.choice(K ** L, size=n - int(n * rate), replace=False)
    keys = np.concatenate([unique, rng.choice(unique, size=int(n * rate))])
    codes = keys_to_codes(keys, K, L)
    z = (reconstruction(codes, codebooks) + 0.1 * rng.normal(size=(n, d))).astype(np.float32)
    return codes, z, codebooks


def bench_dedup(n: int, rate: float) -> dict:
    from prismrec.tokenizer.config import TokenizerConfig
    from prismrec.tokenizer.dedup import deduplicate, sid_keys

    codes, z, codebooks = synthetic_collisions(n, rate)
    cfg = TokenizerConfig()
    start = time.time()
    result = deduplicate(codes, z, codebooks, cfg.dedup_neighbourhood, cfg.dedup_beam, cfg.sinkhorn_epsilon,
                         cfg.sinkhorn_iters)
    wall = time.time() - start
    unique = len(np.unique(sid_keys(result.codes, 256))) == n
    out = {"items": n, "collision_rate": rate, "moved_items": int(len(result.moved)), "wall_seconds": round(wall, 1),
           "unique_after": unique, "ot_mean_extra_distance": result.mean_extra_distance,
           "greedy_next_free_mean_extra_distance": result.greedy_mean_extra_distance,
           "neighbourhood": cfg.dedup_neighbourhood, "beam": cfg.dedup_beam}
    print(json.dumps(out, indent=2))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["beauty", "dedup"], choices=["beauty", "dedup"])
    parser.add_argument("--run", type=Path, default=Path("runs/beauty"), help="run dir with data/ and features/")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="tokenizer config override")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--dedup-items", type=int, default=1_000_000)
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--tag", default="", help="suffix of the result files (tokenize-DATE[-TAG].md/json)")
    args = parser.parse_args()

    results = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
               "python": platform.python_version()}
    if "beauty" in args.cases:
        results["beauty"] = bench_beauty(args.run, args.sets, args.force)
    if "dedup" in args.cases:
        results["dedup"] = bench_dedup(args.dedup_items, 0.05)
    if args.no_save:
        return
    folder = REPO / "benchmarks" / "results"
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"tokenize-{results['date']}{'-' + args.tag if args.tag else ''}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    lines = [f"# Tokenize benchmark, {results['date']}", "", f"Machine: {results['machine']}.", ""]
    if "beauty" in results:
        b = results["beauty"]
        lines += ["## Beauty: SID quality (before/after deduplication)", "", b["table"], "",
                  "| variant | wall s | peak RSS GiB (max so far) | OT extra distance | greedy extra distance |",
                  "|---|---|---|---|---|"]
        for name, v in b["variants"].items():
            lines.append(f"| {name} | {v['wall_seconds']} | {v['peak_rss_gib_max_so_far']} | "
                         f"{v['dedup']['ot_mean_extra_distance']:.4f} | {v['dedup']['greedy_next_free_mean_extra_distance']:.4f} |")
        if (b.get("features_wall_seconds") or 0) >= 1:  # a copied run dir has a near-0 stage time
            lines += ["", f"Features stage (manifest wall time): {b['features_wall_seconds']:.0f} s."]
    if "dedup" in results:
        d = results["dedup"]
        lines += ["", f"## Deduplication of {d['items']:,} synthetic items ({100 * d['collision_rate']:.0f}% collisions)", "",
                  f"{d['moved_items']:,} items moved in {d['wall_seconds']} s; unique afterwards: {d['unique_after']}; "
                  f"mean extra distance OT {d['ot_mean_extra_distance']:.4f} vs greedy next-free "
                  f"{d['greedy_next_free_mean_extra_distance']:.4f}."]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {stem}.md/.json")


if __name__ == "__main__":
    main()
