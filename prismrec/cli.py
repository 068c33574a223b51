"""The ``prismrec`` command: a thin layer over the stage functions.

Every stage module registers its commands here; user errors (``PrismrecError``)
become one line on stderr and exit status 2.
"""

from __future__ import annotations

import logging
import sys

import typer

from prismrec.errors import PrismrecError

app = typer.Typer(
    name="prismrec",
    help="Generative sequential recommendation with Semantic IDs (PRISM, TIGER, SASRec).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_all() -> None:
    from prismrec.data import commands as data_commands
    from prismrec.features import commands as feature_commands
    from prismrec.tokenizer import commands as tokenizer_commands
    from prismrec.recommender import commands as recommender_commands
    from prismrec.serving import commands as serving_commands
    from prismrec import pipeline

    for module in (data_commands, feature_commands, tokenizer_commands, recommender_commands,
                   serving_commands, pipeline):
        module.register(app)


_register_all()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        app(standalone_mode=False)
    except PrismrecError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:  # click usage errors
        import click

        usage_errors: tuple[type, ...] = (click.ClickException,)
        try:  # recent typer vendors click as typer._click: its exceptions are not click's
            from typer._click.exceptions import ClickException as TyperClickException

            usage_errors += (TyperClickException,)
        except ImportError:
            pass
        if isinstance(e, usage_errors):
            e.show()
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
