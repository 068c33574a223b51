"""Options shared by every command, and how a command finds its config.

A run's config is ``RUN_DIR/config.yaml`` (written by the first stage that runs in
it, from the defaults or ``--config``); ``--set section.key=value`` overrides a
field for one command. See ``prismrec/config.py`` for the fields.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml

from prismrec.artifacts import write_text
from prismrec.config import PipelineConfig, load_config, to_dict

ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", "-c", help="YAML config (default: RUN_DIR/config.yaml, else built-in defaults)."),
]
SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override a config field, e.g. --set recommender.epochs=20 (repeatable)."),
]
ForceOption = Annotated[bool, typer.Option("--force", help="Recompute even if inputs and config are unchanged.")]

log = logging.getLogger("prismrec")


def run_config(run_dir: Path, config: Path | None, sets: list[str] | None, save: bool = True) -> PipelineConfig:
    """Resolve the config of a command working on ``run_dir``."""
    stored = Path(run_dir) / "config.yaml"
    path = config if config is not None else (stored if stored.exists() else None)
    cfg = load_config(path, sets or [])
    if save and (config is not None or not stored.exists()):
        save_config(run_dir, cfg)
    return cfg


def save_config(run_dir: Path, cfg: PipelineConfig) -> None:
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    write_text(Path(run_dir) / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
