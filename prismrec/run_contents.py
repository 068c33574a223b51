"""What a run directory holds: its stages and its models, trained or not (``prismrec info``).

Read from the manifests only (no model is loaded), so it is instant on any run. A model's
name is what ``--model`` of ``evaluate``, ``recommend`` and ``serve`` takes. "stale" means
an input changed after the artefact was made (a retrained tokenizer under a trained model,
a retrained model under its evaluation): the next ``train`` / ``evaluate`` recomputes it.
"""

from __future__ import annotations

import json
from pathlib import Path

from prismrec.artifacts import MANIFEST, evaluation_inputs, read_json, stage_fingerprint


def _manifest(path: Path) -> dict | None:
    try:
        return read_json(path / MANIFEST)
    except (OSError, json.JSONDecodeError):
        return None


def _is_stage(name: str) -> bool:
    return name in ("data", "features") or name.startswith("tokenizer")


def _stale(run_dir: Path, inputs: dict) -> bool:
    """An input stage changed (or is gone) since the artefact was made; the data stage's inputs are
    raw files outside the run, not checked here (``prepare`` checks them)."""
    return any(stage_fingerprint(run_dir / name) != fingerprint for name, fingerprint in inputs.items()
               if _is_stage(name))


def stage_rows(run_dir: str | Path) -> list[dict]:
    """Finished stages (data, features, tokenizer, tokenizer-<variant>): when made, how long it took."""
    run_dir = Path(run_dir)
    rows = []
    for path in sorted(p for p in run_dir.iterdir() if p.is_dir() and _is_stage(p.name)):
        manifest = _manifest(path)
        if manifest is None or manifest.get("stage") != path.name:
            continue
        inputs = manifest.get("inputs")
        rows.append({"stage": path.name, "created": manifest.get("created"), "wall_seconds": manifest.get("wall_seconds"),
                     "stale": isinstance(inputs, dict) and _stale(run_dir, inputs)})
    return rows


def model_rows(run_dir: str | Path) -> list[dict]:
    """Every directory in ``models/``: trained, unfinished (resumable) or empty; epochs logged, the best epoch and
    validation NDCG@10 of a trained one, its test R@10 / NDCG@10 once evaluated."""
    run_dir = Path(run_dir)
    rows = []
    models = run_dir / "models"
    for path in sorted(p for p in models.iterdir() if p.is_dir()) if models.is_dir() else []:
        manifest = _manifest(path)
        row = {"model": path.name, "status": "empty", "best_epoch": None, "valid_ndcg@10": None,
               "test_recall@10": None, "test_ndcg@10": None, "stale": False, "evaluation": None,
               "stop_reason": None}
        if manifest is not None and (path / "best.pt").exists():
            row.update(status="trained", best_epoch=manifest.get("best_epoch"), stop_reason=manifest.get("stop_reason"),
                       stale=_stale(run_dir, manifest.get("inputs") or {}))
            best = manifest.get("best_valid")
            row["valid_ndcg@10"] = best if isinstance(best, float) and best >= 0 else None
            evaluation = _manifest(run_dir / "eval" / path.name)
            if evaluation is not None:
                row["evaluation"] = "stale"
                if evaluation.get("inputs") == evaluation_inputs(path):  # what `evaluate` checks to reuse it
                    try:
                        test = read_json(run_dir / "eval" / path.name / "metrics.json")["test"]
                        row.update({"evaluation": "current", "test_recall@10": test["recall@10"],
                                    "test_ndcg@10": test["ndcg@10"]})
                    except (OSError, KeyError, json.JSONDecodeError):
                        pass
        elif (path / "last.pt").exists():
            row["status"] = "unfinished"  # training now, or stopped: the same `train` resumes it
        try:
            log = read_json(path / "train_log.json")
        except (OSError, json.JSONDecodeError):
            log = {}
        row["epochs"] = len(log.get("epochs", []))
        if row["status"] == "unfinished" and log.get("best_epoch"):  # the best so far
            best = log.get("best_valid_ndcg@10")
            row.update(best_epoch=log["best_epoch"], **{"valid_ndcg@10": best if isinstance(best, float) else None})
        rows.append(row)
    return rows


def print_contents(run_dir: str | Path, stages: list[dict], models: list[dict]) -> None:
    """The stages and models as two tables (``prismrec info``)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"stages of {run_dir}")
    for column in ("stage", "created", "wall time", "state"):
        table.add_column(column)
    for row in stages:
        seconds = row["wall_seconds"]
        table.add_row(row["stage"], row["created"] or "", f"{seconds:,.0f} s" if seconds is not None else "",
                      "stale: an input changed" if row["stale"] else "current")
    console.print(table)
    if not models:
        console.print("no models yet: `prismrec train RUN_DIR --model prism|tiger|sasrec|pop`")
        return
    table = Table(title="models (their names are what --model takes)")
    table.add_column("model", no_wrap=True)  # never cut: it is what a user copies
    for column, justify in (("status", "left"), ("epochs", "right"), ("best epoch", "right"),
                            ("valid N@10", "right"), ("test R@10", "right"), ("test N@10", "right")):
        table.add_column(column, justify=justify, no_wrap=column == "status")

    def number(value, digits=4):
        return "" if value is None else f"{value:.{digits}f}"

    for row in models:
        status = row["status"] + (" (stale: an input changed)" if row["stale"] else "")
        if row["evaluation"] == "stale":
            status += ", evaluation stale"
        elif row["status"] == "trained" and row["evaluation"] is None:
            status += ", not evaluated"
        table.add_row(row["model"], status, str(row["epochs"]), "" if row["best_epoch"] is None else str(row["best_epoch"]),
                      number(row["valid_ndcg@10"]), number(row["test_recall@10"]), number(row["test_ndcg@10"]))
    width = max(len(row["model"]) for row in models) + 80  # the other columns' share
    Console(width=max(console.width, width)).print(table)
