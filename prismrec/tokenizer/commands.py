"""CLI commands of this stage (registered by prismrec/cli.py): ``tokenize`` and ``sid-report``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from prismrec.cli_options import ConfigOption, ForceOption, SetOption, run_config
from prismrec.errors import PrismrecError

RunDir = Annotated[Path, typer.Argument(help="Run directory (holds data/ and features/).")]


def sid_report(run_dir: Path) -> str:
    """Markdown quality table of every tokenizer variant in the run, plus the paper's Table 3."""
    from prismrec.artifacts import read_json
    from prismrec.tokenizer.quality import markdown_table

    run_dir = Path(run_dir)
    variants = sorted(p for p in run_dir.glob("tokenizer*") if (p / "quality.json").exists() and (p / "manifest.json").exists())
    if not variants:
        raise PrismrecError(f"{run_dir}: no tokenizer stage with a quality.json; run `prismrec tokenize {run_dir}` first")
    return markdown_table({p.name: read_json(p / "quality.json") for p in variants})


def register(app: typer.Typer) -> None:
    @app.command("tokenize")
    def tokenize(
        run_dir: RunDir,
        mode: Annotated[str, typer.Option(help="prism (Purified Semantic Quantizer) or tiger (plain RQ-VAE on content, 4th-token collisions).")] = "prism",
        no_acd: Annotated[bool, typer.Option("--no-acd", help="Ablation: no ACD trust gate (raw collaborative embedding).")] = False,
        no_hsa: Annotated[bool, typer.Option("--no-hsa", help="Ablation: no hierarchical semantic anchoring.")] = False,
        no_dhr: Annotated[bool, typer.Option("--no-dhr", help="Ablation: one decoder instead of the dual heads.")] = False,
        seed: Annotated[Optional[int], typer.Option(help="Random seed (default: tokenizer.seed of the config).")] = None,
        config: ConfigOption = None,
        set_: SetOption = None,
        force: ForceOption = False,
    ) -> None:
        """Train the quantizer, deduplicate and write RUN_DIR/tokenizer[-variant]/ (SIDs, codebooks, quality.json)."""
        from prismrec.tokenizer.quality import markdown_table
        from prismrec.artifacts import read_json
        from prismrec.tokenizer.train import tokenize_run

        cfg = run_config(run_dir, config, set_).tokenizer
        cfg = replace(cfg, mode=mode, use_acd=cfg.use_acd and not no_acd, use_hsa=cfg.use_hsa and not no_hsa,
                      use_dhr=cfg.use_dhr and not no_dhr, seed=cfg.seed if seed is None else seed)
        stage = tokenize_run(run_dir, cfg, force=force)
        typer.echo(markdown_table({stage.name: read_json(stage / "quality.json")}, with_paper=False), nl=False)

    @app.command("sid-report")
    def sid_report_command(run_dir: RunDir) -> None:
        """Print the SID quality table of every tokenizer variant in RUN_DIR beside the paper's Table 3."""
        typer.echo(sid_report(run_dir), nl=False)
