"""Readers of raw recommendation data (SPEC section 2) into one in-memory form.

Every reader returns a ``RawData``:

``interactions``  user_id:str, item_id:str, timestamp:int64 (seconds), in file order
``items``         item_id:str (unique), title:str, brand:str, category_path:object
                  (list of str, root still included when ``drop_category_root``),
                  free_text:str -- only items that have metadata

Supported inputs:

* Amazon 2014 (McAuley) ``reviews_*.json(.gz)`` + ``meta_*.json(.gz)``: one record
  a line, strict JSON or a Python-literal dict (the real metadata dumps), parsed
  with ``json`` or ``ast.literal_eval`` (never ``eval``); HTML entities in titles
  and brands are unescaped.
* RecBole atomic files ``NAME.inter`` (+ optional ``NAME.item``): tab-separated,
  header fields ``name:type``. ``ml-100k`` is the copy shipped in the ``recbole``
  wheel, found with ``importlib.util.find_spec`` (recbole itself is never imported).
* Generic CSV/TSV/Parquet interactions (+ optional items table) with configurable
  column names.

Any problem the user can fix raises ``PrismrecError`` with one line naming the file,
the line (where there is one) and what was expected.
"""

from __future__ import annotations

import ast
import gzip
import html
import importlib.util
import json
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
from tqdm import tqdm

from prismrec.errors import PrismrecError

log = logging.getLogger("prismrec")

ITEM_COLUMNS = ["item_id", "title", "brand", "category_path", "free_text"]


@dataclass
class RawData:
    interactions: pd.DataFrame
    items: pd.DataFrame
    drop_category_root: bool = False        # Amazon paths start with the category itself ("Beauty")
    inputs: dict[str, Path] = field(default_factory=dict)  # name -> file, for fingerprints
    duplicate_items: int = 0                 # metadata rows dropped as duplicates (first kept)
    category_in_text: bool = True            # False when free_text already lists the categories (ML-100K genres)


# ----------------------------------------------------------------------------- files
def check_readable(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise PrismrecError(f"{path}: {what} file not found")
    if not path.is_file():
        raise PrismrecError(f"{path}: {what} must be a file, found a directory or special file")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        raise PrismrecError(f"{path}: cannot read {what} file ({e.strerror})") from None
    return path


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return True
    if path.suffix == ".gz":
        raise PrismrecError(f"{path}: corrupt gzip file (expected gzip data, the file does not start with the gzip header)")
    return False


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of every non-blank line of a plain or gzip text file."""
    opener = gzip.open if _is_gzip(path) else open
    lineno = 0
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            # progress only on a terminal (disable=None); mininterval keeps the overhead negligible
            lines = tqdm(f, desc=f"reading {path.name}", unit=" lines", disable=None, mininterval=0.5, leave=False)
            for lineno, line in enumerate(lines, start=1):
                if line.strip():
                    yield lineno, line
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise PrismrecError(f"{path}: corrupt gzip file after line {lineno} ({e or 'truncated stream'})") from None
    except UnicodeDecodeError:
        raise PrismrecError(f"{path}:{lineno + 1}: expected UTF-8 text, found undecodable bytes") from None


def parse_record(line: str, path: Path, lineno: int) -> dict:
    """One dict from a strict-JSON or Python-literal line (safe: no eval)."""
    text = line.strip()
    try:
        obj = json.loads(text) if not text.startswith("{'") else ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        try:  # a JSON-looking line may still be a Python literal (True/None, single quotes inside)
            obj = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            raise PrismrecError(f"{path}:{lineno}: malformed line, expected a JSON object or a Python-literal dict") from None
    if not isinstance(obj, dict):
        raise PrismrecError(f"{path}:{lineno}: expected a JSON object / dict, got {type(obj).__name__}")
    return obj


def _required(obj: dict, key: str, path: Path, lineno: int):
    value = obj.get(key)
    if value is None or value == "":
        raise PrismrecError(f"{path}:{lineno}: missing required field '{key}'")
    return value


def _timestamp(value, path: Path, lineno: int, key: str) -> int:
    number = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, (int, float)) or number != number or abs(number) > 1e15:
        raise PrismrecError(f"{path}:{lineno}: field '{key}' must be a numeric Unix timestamp, got {value!r}")
    return int(number)


def _clean_text(value) -> str:
    """Metadata text: unescape HTML entities (``Dr. Scholl&#39;s``), collapse whitespace."""
    if value is None:
        return ""
    return " ".join(html.unescape(str(value)).split())


def _dedup_items(items: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, int]:
    """Duplicate metadata rows: keep the first row of each item id, warn with the count."""
    dup = items["item_id"].duplicated(keep="first")
    n = int(dup.sum())
    if n:
        example = items.loc[dup, "item_id"].iloc[0]
        log.warning("%s: %d duplicate metadata row(s) (e.g. item %r); keeping the first row of each item", path, n, example)
        items = items.loc[~dup].reset_index(drop=True)
    return items, n


def _empty_items() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in ITEM_COLUMNS})


def _interactions_frame(users, items, times) -> pd.DataFrame:
    return pd.DataFrame({"user_id": pd.array(users, dtype=object), "item_id": pd.array(items, dtype=object),
                         "timestamp": np.asarray(times, dtype=np.int64)})


# ----------------------------------------------------------------------------- Amazon 2014
AMAZON_USER, AMAZON_ITEM, AMAZON_TIME = "reviewerID", "asin", "unixReviewTime"


def read_amazon_reviews(path: str | Path) -> pd.DataFrame:
    path = check_readable(path, "reviews")
    users, items, times = [], [], []
    for lineno, line in iter_lines(path):
        rec = parse_record(line, path, lineno)
        users.append(str(_required(rec, AMAZON_USER, path, lineno)))
        items.append(str(_required(rec, AMAZON_ITEM, path, lineno)))
        times.append(_timestamp(_required(rec, AMAZON_TIME, path, lineno), path, lineno, AMAZON_TIME))
    if not users:
        raise PrismrecError(f"{path}: no reviews found, expected one JSON record a line")
    return _interactions_frame(users, items, times)


def read_amazon_meta(path: str | Path) -> tuple[pd.DataFrame, int]:
    path = check_readable(path, "metadata")
    rows = []
    for lineno, line in iter_lines(path):
        rec = parse_record(line, path, lineno)
        asin = str(_required(rec, "asin", path, lineno))
        cats = rec.get("categories") or []
        if not isinstance(cats, list) or not all(isinstance(c, list) for c in cats):
            raise PrismrecError(f"{path}:{lineno}: field 'categories' must be a list of category paths (lists of strings)")
        first = [_clean_text(c) for c in cats[0]] if cats else []
        rows.append((asin, _clean_text(rec.get("title")), _clean_text(rec.get("brand")), first, ""))
    items = pd.DataFrame(rows, columns=ITEM_COLUMNS) if rows else _empty_items()
    return _dedup_items(items, path)


def read_amazon2014(reviews: str | Path, meta: str | Path) -> RawData:
    reviews, meta = check_readable(reviews, "reviews"), check_readable(meta, "metadata")
    interactions = read_amazon_reviews(reviews)
    items, dups = read_amazon_meta(meta)
    return RawData(interactions, items, drop_category_root=True,
                   inputs={reviews.name: reviews, meta.name: meta}, duplicate_items=dups)


# ----------------------------------------------------------------------------- RecBole atomic files
RECBOLE_TITLE = ("movie_title", "title", "name", "item_name")
RECBOLE_YEAR = ("release_year", "year")
RECBOLE_GENRES = ("class", "genre", "genres", "categories", "category")


def embedded_recbole_dir(name: str) -> Path:
    """Directory of a dataset shipped inside the recbole wheel (without importing recbole)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise PrismrecError(f"dataset {name!r}: the recbole wheel is not installed; "
                            "run `pip install --no-deps recbole==1.2.1` (only its data files are used)")
    return Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / name


EMBEDDED = ("ml-100k",)


def resolve_recbole(name_or_dir: str | Path) -> tuple[Path, Path | None]:
    """(.inter file, .item file or None) of a RecBole dataset name or directory."""
    candidate = Path(name_or_dir)
    if candidate.is_dir():
        directory = candidate
    elif str(name_or_dir) in EMBEDDED:
        directory = embedded_recbole_dir(str(name_or_dir))
    else:
        raise PrismrecError(f"unknown dataset {str(name_or_dir)!r}: expected one of {list(EMBEDDED)} "
                            "or a directory holding RecBole atomic files (NAME.inter, NAME.item)")
    inters = sorted(directory.glob("*.inter"))
    if len(inters) != 1:
        raise PrismrecError(f"{directory}: expected exactly one RecBole .inter file, found {len(inters)}")
    item = inters[0].with_suffix(".item")
    return inters[0], (item if item.exists() else None)


def read_atomic(path: Path) -> pd.DataFrame:
    """A RecBole atomic file as strings, columns renamed from ``name:type`` to ``name``."""
    path = check_readable(path, "RecBole atomic")
    opener = gzip.open if _is_gzip(path) else open
    with opener(path, "rt", encoding="utf-8") as f:
        header = f.readline().rstrip("\r\n").split("\t")
    names = []
    for col in header:
        name, sep, _type = col.partition(":")
        if not sep or not name:
            raise PrismrecError(f"{path}:1: header field {col!r} must look like 'name:type' (e.g. user_id:token)")
        names.append(name)
    try:
        table = pd.read_csv(path, sep="\t", header=0, names=names, dtype=str, keep_default_na=False,
                            quoting=3, engine="c")  # quoting=3: QUOTE_NONE, titles contain quotes
    except pd.errors.ParserError as e:
        raise PrismrecError(f"{path}: malformed line ({str(e).strip().splitlines()[-1]})") from None
    except (UnicodeDecodeError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise PrismrecError(f"{path}: cannot decode file ({e})") from None
    return table


def _column_timestamps(values: pd.Series, path: Path, column: str, first_line: int) -> np.ndarray:
    """Numeric timestamps of a column, or an error naming the first bad line."""
    if pd.api.types.is_datetime64_any_dtype(values):
        if values.isna().any():
            bad = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise PrismrecError(f"{path}:{bad + first_line}: field '{column}' is missing, expected a timestamp")
        return (values.astype("datetime64[ns]").astype(np.int64) // 10**9).to_numpy()
    numeric = pd.to_numeric(values, errors="coerce")
    bad = numeric.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise PrismrecError(f"{path}:{row + first_line}: field '{column}' must be a numeric Unix timestamp, "
                            f"got {values.iloc[row]!r}")
    return numeric.to_numpy().astype(np.int64)


def _require_columns(table: pd.DataFrame, path: Path, columns: list[str]) -> None:
    for col in columns:
        if col not in table.columns:
            raise PrismrecError(f"{path}: missing required field/column '{col}' (found: {', '.join(map(str, table.columns))})")


def _require_values(table: pd.DataFrame, path: Path, columns: list[str], first_line: int) -> None:
    for col in columns:
        empty = table[col].isna().to_numpy() | (table[col].astype(str).str.len() == 0).to_numpy()
        if empty.any():
            row = int(np.flatnonzero(empty)[0])
            raise PrismrecError(f"{path}:{row + first_line}: missing required field '{col}'")


def read_recbole(name_or_dir: str | Path) -> RawData:
    inter_path, item_path = resolve_recbole(name_or_dir)
    inter = read_atomic(inter_path)
    _require_columns(inter, inter_path, ["user_id", "item_id", "timestamp"])
    _require_values(inter, inter_path, ["user_id", "item_id"], first_line=2)
    times = _column_timestamps(inter["timestamp"], inter_path, "timestamp", first_line=2)
    interactions = _interactions_frame(inter["user_id"].to_numpy(), inter["item_id"].to_numpy(), times)
    inputs = {inter_path.name: inter_path}
    items, dups = _empty_items(), 0
    if item_path is not None:
        table = read_atomic(item_path)
        _require_columns(table, item_path, ["item_id"])
        items, dups = _dedup_items(_recbole_items(table), item_path)
        inputs[item_path.name] = item_path
    return RawData(interactions, items, drop_category_root=False, inputs=inputs, duplicate_items=dups,
                   category_in_text=False)


def _first(table: pd.DataFrame, names: tuple[str, ...]) -> pd.Series:
    for name in names:
        if name in table.columns:
            return table[name].fillna("").astype(str)
    return pd.Series([""] * len(table), index=table.index)


def _recbole_items(table: pd.DataFrame) -> pd.DataFrame:
    """ML-100K-style items: title + release year as the title; the genres (a space-separated
    token_seq) are single-level category tags: level 1 = the first genre."""
    title = _first(table, RECBOLE_TITLE).map(_clean_text)
    year = _first(table, RECBOLE_YEAR).str.strip()
    title = np.where(year != "", title + " (" + year + ")", title)
    genres = _first(table, RECBOLE_GENRES).str.split()
    return pd.DataFrame({
        "item_id": table["item_id"].astype(str).to_numpy(),
        "title": title,
        "brand": _first(table, ("brand",)).map(_clean_text).to_numpy(),
        "category_path": [g[:1] for g in genres],
        "free_text": ["Genres: " + ", ".join(g) if g else "" for g in genres],
    })


# ----------------------------------------------------------------------------- generic CSV / Parquet
@dataclass
class Columns:
    """Column names of a generic interactions / items table."""

    user: str = "user_id"
    item: str = "item_id"
    time: str = "timestamp"
    title: str = "title"
    brand: str = "brand"
    category: str = "category"   # "A > B > C" (separator configurable) or a list (Parquet)
    text: str = "text"           # free text appended to the item text
    category_sep: str = ">"


def read_table(path: str | Path, what: str) -> tuple[pd.DataFrame, int]:
    """A CSV/TSV (optionally gzipped) or Parquet table; also the file line of its first data row."""
    path = check_readable(path, what)
    if path.suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path), 1  # "line" = row number for Parquet
        except Exception as e:  # pyarrow raises several types for a broken file
            raise PrismrecError(f"{path}: cannot read Parquet file ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    gz = _is_gzip(path)
    stem_suffix = Path(path.stem).suffix if gz else path.suffix
    sep = "\t" if stem_suffix in (".tsv", ".tab") else ","
    try:
        table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""],
                            compression="gzip" if gz else None)
    except pd.errors.EmptyDataError:
        raise PrismrecError(f"{path}: empty file, expected a header line and rows") from None
    except pd.errors.ParserError as e:
        raise PrismrecError(f"{path}: malformed line ({str(e).strip().splitlines()[-1]})") from None
    except (UnicodeDecodeError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise PrismrecError(f"{path}: cannot decode file ({e})") from None
    return table, 2


def read_csv_source(interactions: str | Path, items: str | Path | None = None,
                    columns: Columns | None = None, drop_category_root: bool = False) -> RawData:
    cols = columns or Columns()
    inter_path = check_readable(interactions, "interactions")
    table, first = read_table(inter_path, "interactions")
    _require_columns(table, inter_path, [cols.user, cols.item, cols.time])
    _require_values(table, inter_path, [cols.user, cols.item], first)
    times = _column_timestamps(table[cols.time], inter_path, cols.time, first)
    raw = _interactions_frame(table[cols.user].astype(str).to_numpy(), table[cols.item].astype(str).to_numpy(), times)
    del table
    inputs = {inter_path.name: inter_path}
    item_table, dups = _empty_items(), 0
    if items is not None:
        item_path = check_readable(items, "items")
        t, first = read_table(item_path, "items")
        _require_columns(t, item_path, [cols.item])
        _require_values(t, item_path, [cols.item], first)
        item_table, dups = _dedup_items(_generic_items(t, cols), item_path)
        inputs[f"items:{item_path.name}"] = item_path
    return RawData(raw, item_table, drop_category_root=drop_category_root, inputs=inputs, duplicate_items=dups)


def _generic_items(t: pd.DataFrame, cols: Columns) -> pd.DataFrame:
    def text_col(name: str) -> pd.Series:
        return t[name].map(_clean_text) if name in t.columns else pd.Series([""] * len(t))

    if cols.category in t.columns:
        def to_path(v) -> list[str]:
            if isinstance(v, (list, tuple, np.ndarray)):
                parts = list(v)
            elif v is None or (isinstance(v, float) and v != v):
                parts = []
            else:
                parts = str(v).split(cols.category_sep)
            return [p for p in (_clean_text(x) for x in parts) if p]
        paths = [to_path(v) for v in t[cols.category].to_numpy()]
    else:
        paths = [[] for _ in range(len(t))]
    return pd.DataFrame({"item_id": t[cols.item].astype(str).to_numpy(),
                         "title": text_col(cols.title).to_numpy(), "brand": text_col(cols.brand).to_numpy(),
                         "category_path": paths, "free_text": text_col(cols.text).to_numpy()})
