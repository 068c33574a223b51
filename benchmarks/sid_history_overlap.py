"""Do a target's coarse SID codes appear in the user's history? By target popularity.

A generative recommender picks the target's first code before anything else; when that code
is one the history's items already carry, the model can get there by "more of the same
cluster". This measures, for each SID variant and each popularity third of the targets, the
share of users whose target's level-1 code is among the history items' level-1 codes, equals
the last item's, and whose level-1..2 prefix is among the history's. No model is trained: it
reads the SIDs and the splits only (seconds).

    python benchmarks/sid_history_overlap.py runs/beauty/tokenizer runs/beauty/tokenizer-tiger \\
        runs/beauty-x/tokenizer-prism-no-acd=no-ACD
    # writes benchmarks/results/sid-history-overlap-<date>.{json,md}

Each argument is a tokenizer stage directory inside a run directory (its parent holds
``data/``), optionally ``=LABEL``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np

from benchmark_io import command_line, machine_info, write_results
from prismrec.data.dataset import PAD, load_prepared
from prismrec.evaluation.metrics import GROUPS, popularity_groups
from prismrec.tokenizer.store import load_sids

MEASURES = ("level-1 code in history", "level-1 code = last item's", "level-1..2 prefix in history")


def overlap(codes: np.ndarray, history: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    """Per user: whether the target's coarse codes occur in the history (PAD positions never match)."""
    known = history != PAD
    prefix_id = codes[:, 0] * (codes[:, 1].max() + 1) + codes[:, 1]   # level-1..2 prefix as one number
    items = np.where(known, history, 0)
    first = np.where(known, codes[items, 0], -1)
    prefix = np.where(known, prefix_id[items], -1)
    target_prefix = prefix_id[target]
    return {MEASURES[0]: (first == codes[target, 0][:, None]).any(1),
            MEASURES[1]: first[:, -1] == codes[target, 0],
            MEASURES[2]: (prefix == target_prefix[:, None]).any(1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stages", nargs="+", help="RUN_DIR/TOKENIZER_STAGE[=LABEL]")
    parser.add_argument("--out", type=Path, default=None, help="output stem (default: benchmarks/results/...)")
    args = parser.parse_args()

    results: dict[str, dict] = {}
    run_dirs = []
    for spec in args.stages:
        path, _, label = spec.partition("=")
        stage = Path(path)
        run_dirs.append(stage.parent)
        label = label or str(stage)
        data = load_prepared(stage.parent)
        codes = load_sids(stage.parent, stage.name).codes
        if codes.shape[1] < 2:
            sys.exit(f"{stage}: SIDs of {codes.shape[1]} level(s); this needs at least 2")
        item_group = popularity_groups(data.items["train_count"].to_numpy())
        for split in ("valid", "test"):
            examples = data.examples(split)
            hits = overlap(codes, examples.history, examples.target)
            group = item_group[examples.target]
            results.setdefault(label, {})[split] = {
                measure: {name: float(hit[group == g].mean()) for g, name in enumerate(GROUPS)} | {"all": float(hit.mean())}
                for measure, hit in hits.items()}

    date = dt.date.today().isoformat()
    command = command_line(*run_dirs)
    lines = [f"# Target's coarse SID codes in the history, by target popularity — {date}", "", f"`{command}`", ""]
    for split in ("valid", "test"):
        lines += [f"## {split}", "", "| SIDs | measure | all | " + " | ".join(GROUPS) + " |", "|---|---|---|" + "---|" * len(GROUPS)]
        for label, by_split in results.items():
            for measure, row in by_split[split].items():
                lines.append(f"| {label} | {measure} | {row['all']:.3f} | " + " | ".join(f"{row[g]:.3f}" for g in GROUPS) + " |")
        lines.append("")
    stem = args.out or Path(__file__).parent / "results" / f"sid-history-overlap-{date}"
    write_results(stem, {"date": date, "command": command, "machine": machine_info(), "results": results}, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
