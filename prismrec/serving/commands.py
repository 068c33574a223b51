"""CLI commands of this stage (registered by prismrec/cli.py)."""

import typer


def register(app: typer.Typer) -> None:
    pass
