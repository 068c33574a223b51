"""The main job: prepare -> features -> tokenize -> train -> evaluate (``prismrec run``)."""

import typer


def register(app: typer.Typer) -> None:
    pass
