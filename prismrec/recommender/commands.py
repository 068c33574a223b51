"""CLI commands of the recommender stage: ``train``, ``evaluate``, ``recommend``."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from typing import Annotated, Optional

import typer

from prismrec.cli_options import ConfigOption, ForceOption, SetOption, run_config

TITLE_WIDTH = 100  # characters of an item title that `recommend` prints (Amazon titles run to 400+)
RunDir = Annotated[Path, typer.Argument(help="Run directory (made by `prismrec prepare`).")]
ModelOption = Annotated[Optional[str], typer.Option(
    "--model", "-m", help="prism | tiger | sasrec | pop (default: config), or a model directory name such as "
                          "tiger-item-ids-item-head-seed1 (sets the switches and seed the name encodes).")]
NoDsi = Annotated[bool, typer.Option("--no-dsi", help="PRISM without dynamic semantic integration.")]
NoSsa = Annotated[bool, typer.Option("--no-ssa", help="PRISM without semantic structure alignment.")]
NoAts = Annotated[bool, typer.Option("--no-ats", help="PRISM without adaptive temperature scaling.")]
SeedOption = Annotated[Optional[int], typer.Option("--seed", help="Random seed (default: config).")]
DeviceOption = Annotated[Optional[str], typer.Option("--device", help="auto | cpu | cuda (default: config).")]


def resolve(run_dir: Path, config: Optional[Path], sets: Optional[list[str]], model: Optional[str], no_dsi: bool,
            no_ssa: bool, no_ats: bool, seed: Optional[int], device: Optional[str], max_minutes: Optional[float] = None):
    """The run's config with the command-line switches applied to its recommender section."""
    from prismrec.recommender.registry import check_model

    cfg = run_config(run_dir, config, sets)
    if model is not None:
        flags = [flag for flag, given in (("--seed", seed is not None), ("--no-dsi", no_dsi), ("--no-ssa", no_ssa),
                                          ("--no-ats", no_ats)) if given]
        cfg.recommender = named_model(cfg.recommender, model, sets, flags)
    changes = {k: v for k, v in (("seed", seed), ("device", device), ("max_minutes", max_minutes))
               if v is not None}
    changes.update({k: False for k, off in (("use_dsi", no_dsi), ("use_ssa", no_ssa), ("use_ats", no_ats)) if off})
    cfg.recommender = dataclasses.replace(cfg.recommender, **changes)
    check_model(cfg.recommender)
    return cfg


def named_model(rcfg, name: str, sets: Optional[list[str]], flags: list[str] = ()):
    """``rcfg`` set to the model ``name`` (``registry.select_model``). A model directory name says
    every field it encodes, so a ``--set`` or flag (``flags``: those given) that changes one of them
    is an error, not a silent override; beside a bare model name they apply as usual."""
    from prismrec.errors import PrismrecError
    from prismrec.recommender.registry import MODEL_NAMES, NAME_FIELDS, select_model

    if name not in MODEL_NAMES:
        named = {f"recommender.{field}" for field in NAME_FIELDS}
        clash = [s for s in sets or [] if s.split("=", 1)[0].strip() in named] + list(flags)
        if clash:
            raise PrismrecError(f"--model {name}: a model directory name already sets the model, its modules, "
                                f"item-id switches, SIDs and seed; drop {' '.join(clash)} or name another model")
    return select_model(rcfg, name)


def register(app: typer.Typer) -> None:
    @app.command()
    def train(run_dir: RunDir, model: ModelOption = None, no_dsi: NoDsi = False, no_ssa: NoSsa = False,
              no_ats: NoAts = False, seed: SeedOption = None, device: DeviceOption = None,
              max_minutes: Annotated[Optional[float], typer.Option(
                  "--max-minutes", help="Stop cleanly after this many minutes (keeps the best checkpoint; "
                                        "running again resumes).")] = None,
              config: ConfigOption = None, set_: SetOption = None, force: ForceOption = False) -> None:
        """Train a recommender with early stopping on validation NDCG@10 (resumable)."""
        from prismrec.artifacts import read_json
        from prismrec.distributed import DistributedContext
        from prismrec.recommender.trainer import train_run

        cfg = resolve(run_dir, config, set_, model, no_dsi, no_ssa, no_ats, seed, device, max_minutes)
        out = train_run(run_dir, cfg, force=force)
        if not DistributedContext.from_env().is_main:  # under torchrun, one summary line
            return
        log = read_json(out / "train_log.json")
        best = log.get("best_valid_ndcg@10")
        typer.echo(f"{out}: {log.get('stop_reason')}, best epoch {log.get('best_epoch')}"
                   + (f", valid NDCG@10 {best:.4f}" if isinstance(best, float) and best >= 0 else ""))

    @app.command()
    def evaluate(run_dir: RunDir, model: ModelOption = None, no_dsi: NoDsi = False, no_ssa: NoSsa = False,
                 no_ats: NoAts = False, seed: SeedOption = None, device: DeviceOption = None,
                 config: ConfigOption = None, set_: SetOption = None, force: ForceOption = False) -> None:
        """Score the selected checkpoint on the test set once; write RUN_DIR/eval/<model>/metrics.{json,md}."""
        from prismrec.evaluation.evaluator import evaluate_run, results_title
        from prismrec.evaluation.metrics import markdown_table

        cfg = resolve(run_dir, config, set_, model, no_dsi, no_ssa, no_ats, seed, device)
        results = evaluate_run(run_dir, cfg, force=force)
        typer.echo(markdown_table(results, title=results_title(results)))

    @app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def recommend(ctx: typer.Context, run_dir: RunDir,
                  history: Annotated[list[str], typer.Option(
                      "--history", help="Item ids, oldest first: --history A B C (or repeat --history).")],
                  k: Annotated[int, typer.Option("-k", "--top", help="Number of items.")] = 10,
                  timestamps: Annotated[Optional[str], typer.Option(
                      help="Unix seconds of the history items, comma-separated, oldest first (optional): "
                           "the time intervals the model was trained with.")] = None,
                  model: ModelOption = None, no_dsi: NoDsi = False, no_ssa: NoSsa = False, no_ats: NoAts = False,
                  seed: SeedOption = None, device: DeviceOption = None,
                  config: ConfigOption = None, set_: SetOption = None) -> None:
        """Top-k next items (raw ids, titles, scores) for a history."""
        from prismrec.errors import PrismrecError
        from prismrec.recommender.inference import Recommender

        # click options take one value each: the ids after the first arrive as extra arguments
        options = {name for param in ctx.command.params for name in param.opts}
        if history and history[0] in options:  # `--history -k 5`: click took the option for an id
            raise PrismrecError(f"recommend: --history needs item ids before {history[0]}, "
                                "e.g. --history ITEM_A ITEM_B -k 10")
        stray = [a for a in ctx.args if a.startswith("-")]
        if stray:
            raise PrismrecError(f"recommend: unknown option(s) {' '.join(stray)}; see `prismrec recommend --help`")
        history = [i for part in [*history, *ctx.args] for i in part.split(",") if i]

        cfg = resolve(run_dir, config, set_, model, no_dsi, no_ssa, no_ats, seed, device)
        times = None
        if timestamps is not None:
            try:
                times = [int(t) for t in timestamps.split(",") if t.strip()]
            except ValueError:
                raise PrismrecError(f"recommend: --timestamps expects comma-separated integers (Unix seconds), "
                                    f"got {timestamps!r}") from None
        rec = Recommender.load(run_dir, cfg)
        for rank, row in enumerate(rec.recommend(history, k, times), start=1):
            title = textwrap.shorten(row["title"], TITLE_WIDTH, placeholder=" ...")  # one line per item
            typer.echo(f"{rank:>3}  {row['item_id']}  {row['score']:.4f}  {title}")

    @app.command()
    def report(run_dir: RunDir) -> None:
        """Every evaluated model side by side (mean ± std over seeds), ablations against their
        full model, and the training curves (PNG)."""
        from prismrec.evaluation.report import write_report

        text, plot = write_report(run_dir)
        typer.echo(text)
        typer.echo(f"written: {run_dir / 'eval' / 'report.md'}" + (f", {plot}" if plot else ""))
