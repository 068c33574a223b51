"""CLI of the prepare stage: ``prismrec prepare {amazon2014,recbole,csv}`` and ``prismrec info``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from prismrec.cli_options import ConfigOption, ForceOption, SetOption, run_config

OutOption = Annotated[Path, typer.Option("--out", "-o", help="Run directory (the tables go to RUN_DIR/data).")]


def _prepare(source: str, out: Path, config: Path | None, sets: list[str] | None, force: bool, **paths: Any) -> None:
    from prismrec.data.prepare import prepare_dataset, summarize

    created = not out.exists()
    try:
        cfg = run_config(out, config, sets).data
        prepare_dataset(source, out, cfg, force=force, **paths)
    except BaseException:
        if created:  # no half-written run directory (run_config may already have written config.yaml)
            shutil.rmtree(out, ignore_errors=True)
        raise
    _print_summary(summarize(out), out)


def _print_summary(s: dict[str, Any], run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"prepared data: {run_dir}", show_header=False)
    table.add_column("fact", style="bold")
    table.add_column("value")
    seq = s["sequence_length"]
    pop = s["popularity"]
    kc = s.get("k_core", {})
    source = s["source"]  # {kind, dataset, ...} of `prepare`; a bare name for runs written otherwise (synthetic)
    if isinstance(source, dict):
        source = ", ".join(f"{k}={v}" for k, v in source.items() if k in ("kind", "dataset"))
    rows = [
        ("source", source),
        ("users / items / interactions", f"{s['users']:,} / {s['items']:,} / {s['interactions']:,}"),
        ("sequence length", ", ".join(f"{k} {v}" for k, v in seq.items())),
        ("split examples", ", ".join(f"{k} {v:,}" for k, v in s["splits"].items())),
        ("tag vocabulary per level", ", ".join(f"{k.split('_')[1]}: {v}" for k, v in s["tag_vocab"].items())),
        ("category depth (items)", ", ".join(f"{k}: {v}" for k, v in s["category_depth"].items())),
        ("training popularity", f"{pop['train_interactions']:,} interactions; count min {pop['train_count_min']}, "
                                f"median {pop['train_count_median']}, max {pop['train_count_max']}; "
                                f"{pop['items_not_in_training']} items not in training"),
        ("items without metadata", str(s["items_without_metadata"])),
        ("duplicate metadata rows dropped", str(s["duplicate_metadata_rows"])),
    ]
    if kc:
        raw = s.get("raw", {})
        rows.append(("k-core", f"k={kc['k']}, {kc['passes']} pass(es), removed {kc['removed_interactions']:,} of "
                               f"{raw.get('interactions', 0):,} interactions"))
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def register(app: typer.Typer) -> None:
    prepare = typer.Typer(help="Prepare a dataset into RUN_DIR/data (k-core, chronological sequences, "
                               "leave-one-out splits, training popularity, category tags, item text).",
                          no_args_is_help=True)
    app.add_typer(prepare, name="prepare")

    @prepare.command("amazon2014")
    def amazon2014(
        reviews: Annotated[Path, typer.Option(help="reviews_<Cat>_5.json(.gz) (one JSON record a line).")],
        meta: Annotated[Path, typer.Option(help="meta_<Cat>.json(.gz) (JSON or Python-literal dict a line).")],
        out: OutOption,
        config: ConfigOption = None, set_: SetOption = None, force: ForceOption = False,
    ) -> None:
        """Amazon 2014 (McAuley) reviews + metadata, strict JSON or Python-literal lines, gz or plain."""
        _prepare("amazon2014", out, config, set_, force, reviews=reviews, meta=meta)

    @prepare.command("recbole")
    def recbole(
        dataset: Annotated[str, typer.Argument(help="'ml-100k' (embedded in the recbole wheel) or a directory "
                                                    "with NAME.inter (+ NAME.item) RecBole atomic files.")],
        out: OutOption,
        config: ConfigOption = None, set_: SetOption = None, force: ForceOption = False,
    ) -> None:
        """RecBole atomic files; ML-100K: title + year as text, the first genre as the category tag."""
        _prepare("recbole", out, config, set_, force, dataset=dataset)

    @prepare.command("csv")
    def csv(
        interactions: Annotated[Path, typer.Option(help="CSV/TSV (optionally .gz) or Parquet of (user, item, timestamp).")],
        out: OutOption,
        items: Annotated[Optional[Path], typer.Option(help="Optional items table (item, title, brand, category, text).")] = None,
        user_col: Annotated[str, typer.Option(help="User column.")] = "user_id",
        item_col: Annotated[str, typer.Option(help="Item column (both tables).")] = "item_id",
        time_col: Annotated[str, typer.Option(help="Timestamp column (numeric seconds).")] = "timestamp",
        title_col: Annotated[str, typer.Option(help="Title column of the items table.")] = "title",
        brand_col: Annotated[str, typer.Option(help="Brand column of the items table.")] = "brand",
        category_col: Annotated[str, typer.Option(help="Category path column ('A > B > C' or a list).")] = "category",
        text_col: Annotated[str, typer.Option(help="Free-text column appended to the item text.")] = "text",
        category_sep: Annotated[str, typer.Option(help="Separator of category path levels.")] = ">",
        drop_category_root: Annotated[bool, typer.Option(help="Drop the first level of each category path.")] = False,
        config: ConfigOption = None, set_: SetOption = None, force: ForceOption = False,
    ) -> None:
        """Generic interactions table (+ items table) with configurable column names."""
        from prismrec.data.readers import Columns

        columns = Columns(user=user_col, item=item_col, time=time_col, title=title_col, brand=brand_col,
                          category=category_col, text=text_col, category_sep=category_sep)
        _prepare("csv", out, config, set_, force, interactions=interactions, items=items, columns=columns,
                 drop_category_root=drop_category_root)

    @app.command("info")
    def info(
        run_dir: Annotated[Path, typer.Argument(help="Run directory with a prepared RUN_DIR/data stage.")],
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    ) -> None:
        """Summary of a run: its prepared data (users, items, interactions, lengths, splits, tags,
        popularity), its stages and its models (status, validation and test NDCG@10)."""
        from prismrec.data.prepare import summarize
        from prismrec.run_contents import model_rows, print_contents, stage_rows

        s = summarize(run_dir)
        stages, models = stage_rows(run_dir), model_rows(run_dir)
        if as_json:
            typer.echo(json.dumps({**s, "stages": stages, "models": models}))
        else:
            _print_summary(s, run_dir)
            print_contents(run_dir, stages, models)
