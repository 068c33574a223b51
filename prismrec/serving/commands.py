"""``prismrec serve``: HTTP recommendations from a trained run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prismrec.cli_options import ConfigOption, SetOption, run_config


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        run_dir: Annotated[Path, typer.Argument(help="Run directory with a trained model.")],
        model: Annotated[str, typer.Option(help="Model to serve: prism, tiger, sasrec, pop or a model directory "
                                                "name (RUN_DIR/models/<name>).")] = "prism",
        host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
        device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
        config: ConfigOption = None,
        set_: SetOption = None,
    ) -> None:
        """Serve top-k recommendations over HTTP (POST /recommend, POST /recommend/batch, GET /health)."""
        import dataclasses

        import uvicorn

        from prismrec.recommender.commands import named_model
        from prismrec.recommender.inference import Recommender
        from prismrec.serving.app import create_app

        cfg = run_config(run_dir, config, set_, save=False)
        rcfg = dataclasses.replace(named_model(cfg.recommender, model, set_), device=device)
        recommender = Recommender.load(run_dir, rcfg)
        uvicorn.run(create_app(recommender), host=host, port=port, log_level="info")
