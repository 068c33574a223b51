"""The main job, ``prismrec run``: prepare -> features -> tokenize -> train -> evaluate.

Each stage is skipped when its inputs and config did not change, so re-running
``prismrec run`` after an interruption resumes where it stopped (training itself
resumes from its last checkpoint).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from prismrec.cli_options import ConfigOption, ForceOption, SetOption, run_config
from prismrec.config import PipelineConfig
from prismrec.errors import PrismrecError

log = logging.getLogger("prismrec")

EMBEDDED = ("ml-100k",)


def run_pipeline(run_dir: Path, cfg: PipelineConfig, dataset: str = "ml-100k",
                 baselines: tuple[str, ...] = ("pop",), force: bool = False) -> dict[str, dict]:
    """Run every stage on ``dataset`` (an embedded name or a directory of RecBole atomic files)."""
    from prismrec.data.prepare import prepare_dataset, summarize
    from prismrec.evaluation.evaluator import evaluate_run
    from prismrec.features.build import build_features
    from prismrec.recommender.trainer import train_run
    from prismrec.tokenizer.train import tokenize_run

    timings: dict[str, float] = {}

    def timed(name: str, fn, *args, **kwargs):
        start = time.time()
        log.info("== %s", name)
        out = fn(*args, **kwargs)
        timings[name] = time.time() - start
        return out

    timed("prepare", prepare_dataset, "recbole", run_dir, cfg.data, force=force, dataset=dataset)
    summary = summarize(run_dir)
    log.info("dataset: %s users, %s items, %s interactions", summary["users"], summary["items"],
             summary["interactions"])
    timed("features", build_features, run_dir, cfg.features, force=force)
    timed("tokenize", tokenize_run, run_dir, cfg.tokenizer, force=force)
    results: dict[str, dict] = {}
    for model in ("prism", *baselines):
        if model == "tiger":
            tiger_tok = dataclasses.replace(cfg.tokenizer, mode="tiger")
            timed("tokenize tiger", tokenize_run, run_dir, tiger_tok, force=force)
        mcfg = dataclasses.replace(cfg.recommender, model=model)
        timed(f"train {model}", train_run, run_dir, mcfg, force=force)
        results[model] = timed(f"evaluate {model}", evaluate_run, run_dir, mcfg)
    _print_summary(results, timings)
    from prismrec.evaluation.report import write_report

    _, plot = write_report(run_dir)
    log.info("report: %s%s", run_dir / "eval" / "report.md", f", curves: {plot}" if plot else "")
    return results


def _print_summary(results: dict[str, dict], timings: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    keys = ["recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20"]
    table = Table(title="Test metrics (full ranking, leave-one-out)")
    table.add_column("model")
    for k in keys:
        table.add_column(k.replace("recall", "R").replace("ndcg", "N"), justify="right")
    for model, metrics in results.items():
        table.add_row(model, *(f"{metrics['test'][k]:.4f}" for k in keys))
    console = Console()
    console.print(table)
    console.print("stage times: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_command(
        dataset: Annotated[str, typer.Option(help="Embedded dataset name (ml-100k) or a directory of RecBole atomic files.")] = "ml-100k",
        out: Annotated[Optional[Path], typer.Option(help="Run directory (default: runs/<dataset>).")] = None,
        baseline: Annotated[Optional[list[str]], typer.Option("--baseline", help="Baselines to run beside PRISM (pop, tiger, sasrec; repeatable). Default: pop.")] = None,
        device: Annotated[Optional[str], typer.Option(help="auto | cpu | cuda for every stage (default: config).")] = None,
        config: ConfigOption = None,
        set_: SetOption = None,
        force: ForceOption = False,
    ) -> None:
        """The main job: prepare, features, tokenize, train and evaluate PRISM (+ most-popular) and print the metrics."""
        run_dir = out or Path("runs") / Path(dataset).name
        if config is None and dataset in EMBEDDED and not (run_dir / "config.yaml").exists():
            config = _packaged_config(dataset)
        cfg = run_config(run_dir, config, set_)
        if device is not None:
            cfg = PipelineConfig(data=cfg.data, features=dataclasses.replace(cfg.features, device=device),
                                 tokenizer=dataclasses.replace(cfg.tokenizer, device=device),
                                 recommender=dataclasses.replace(cfg.recommender, device=device))
        names = tuple(baseline) if baseline else ("pop",)
        unknown = [b for b in names if b not in ("pop", "tiger", "sasrec")]
        if unknown:
            raise PrismrecError(f"--baseline: unknown model(s) {unknown}; expected pop, tiger or sasrec")
        run_pipeline(run_dir, cfg, dataset=dataset, baselines=names, force=force)


def _packaged_config(name: str) -> Path | None:
    path = Path(__file__).resolve().parent / "configs" / f"{name}.yaml"
    return path if path.exists() else None
