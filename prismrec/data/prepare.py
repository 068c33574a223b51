"""The prepare stage: raw data -> the prepared tables of ``prismrec.data.dataset``.

Protocol (SPEC section 2, paper section 4.1):

* iterative k-core: drop users and items with fewer than ``k_core`` interactions
  until nothing changes (users additionally need 3 interactions: train + valid + test);
* each user's items sorted by timestamp, stable (same-time ties keep file order);
* users and items are numbered in order of first appearance in the (filtered) file;
* popularity = interaction count in the *training part* of each sequence only (all
  but the last two items), log1p, then min-max to [0, 1];
* category path = the item's first path without its root when the source has one
  (Amazon: ``Beauty > Makeup > Eyes`` -> ``Makeup > Eyes``); the tag of level ``l``
  is the path prefix up to ``l`` (``Makeup > Eyes``), so equal names under different
  parents stay different tags; per-level vocabularies are sorted, 0 = PAD;
* item text: ``Title: ...; Brand: ...; Category: A > B > C`` (+ free text), missing
  fields skipped; the placeholder brand ``Unknown`` is left out of the text;
* items without metadata keep ``has_metadata = False`` and the text
  ``DataConfig.missing_text`` (default ``Item <raw id>``); duplicate metadata rows:
  the first row of an item wins (the readers warn with the count).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prismrec.artifacts import build_stage, file_fingerprint, is_current, read_json, stage_fingerprint_for
from prismrec.data.config import DataConfig
from prismrec.data.dataset import load_prepared, write_prepared
from prismrec.data.readers import (Columns, RawData, check_readable, read_amazon2014, read_csv_source,
                                   read_recbole, resolve_recbole)
from prismrec.errors import PrismrecError

log = logging.getLogger("prismrec")

SOURCES = ("amazon2014", "recbole", "csv")
MIN_USER_LENGTH = 3        # a user needs a training item, a validation and a test target
PLACEHOLDER_BRANDS = {"unknown", "n/a", "none"}


# ----------------------------------------------------------------------------- k-core
def k_core(users: np.ndarray, items: np.ndarray, user_min: int, item_min: int) -> tuple[np.ndarray, list[int]]:
    """Mask of interactions kept by the iterative k-core, and rows removed in each pass.

    ``users``/``items`` are dense codes (0..U-1, 0..I-1). Each pass counts with
    ``np.bincount`` over the rows still kept; it stops when a pass removes nothing.
    """
    keep = np.ones(len(users), dtype=bool)
    removed_per_pass: list[int] = []
    while True:
        u, i = users[keep], items[keep]
        ok = (np.bincount(u, minlength=users.max(initial=-1) + 1)[u] >= user_min) & \
             (np.bincount(i, minlength=items.max(initial=-1) + 1)[i] >= item_min)
        removed = int((~ok).sum())
        removed_per_pass.append(removed)
        if removed == 0:
            return keep, removed_per_pass
        keep[np.flatnonzero(keep)[~ok]] = False


# ----------------------------------------------------------------------------- tables
def _list_column(offsets: np.ndarray, values: np.ndarray) -> np.ndarray:
    """An object column of per-user arrays (views into ``values``), as Parquet list columns
    read back; an Arrow list dtype would be faster but its pandas metadata does not round-trip."""
    column = np.empty(len(offsets) - 1, dtype=object)
    column[:] = np.split(values, offsets[1:-1])
    return column


def item_text(title: str, brand: str, path: list[str], free_text: str) -> str:
    parts = []
    if title:
        parts.append(f"Title: {title}")
    if brand and brand.lower() not in PLACEHOLDER_BRANDS:
        parts.append(f"Brand: {brand}")
    if path:
        parts.append("Category: " + " > ".join(path))
    if free_text:
        parts.append(free_text)
    return "; ".join(parts)


def _category_tags(paths: list[list[str]], num_levels: int) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Per-level tag index of each item (0 = PAD) and the tag table (level, tag_idx, tag)."""
    columns, rows = {}, []
    for level in range(1, num_levels + 1):
        names = [" > ".join(p[:level]) if len(p) >= level else "" for p in paths]
        vocab = sorted(set(names) - {""})
        index = {t: k + 1 for k, t in enumerate(vocab)}
        index[""] = 0
        columns[f"tag_{level}"] = np.fromiter((index[n] for n in names), dtype=np.int32, count=len(names))
        rows += [(level, index[t], t) for t in vocab]
    tags = pd.DataFrame(rows, columns=["level", "tag_idx", "tag"]).astype({"level": np.int32, "tag_idx": np.int32})
    return columns, tags


def build_tables(raw: RawData, cfg: DataConfig) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The prepared (items, sequences, tags) tables and a report of what was filtered."""
    inter = raw.interactions
    where = ", ".join(str(p) for p in raw.inputs.values())
    user_codes, user_ids = pd.factorize(inter["user_id"], sort=False)
    item_codes, item_ids = pd.factorize(inter["item_id"], sort=False)
    keep, removed = k_core(user_codes, item_codes, max(cfg.k_core, MIN_USER_LENGTH), max(cfg.k_core, 1))
    report: dict[str, Any] = {
        "raw": {"users": len(user_ids), "items": len(item_ids), "interactions": len(inter)},
        "k_core": {"k": cfg.k_core, "min_user_length": max(cfg.k_core, MIN_USER_LENGTH),
                   "passes": len(removed), "removed_per_pass": removed, "removed_interactions": int(sum(removed))},
        "duplicate_metadata_rows": raw.duplicate_items,
    }
    if not keep.any():
        raise PrismrecError(f"{where}: the {cfg.k_core}-core (users need >= {max(cfg.k_core, MIN_USER_LENGTH)} "
                            f"interactions) removes all {len(inter)} interactions; lower data.k_core or supply more data")
    if report["k_core"]["removed_interactions"]:
        log.info("k-core removed %d of %d interactions in %d passes", report["k_core"]["removed_interactions"],
                 len(inter), len(removed))

    # renumber in first-appearance order of the kept rows, then sort stably by (user, time, file order)
    users, user_ids = pd.factorize(user_ids[user_codes[keep]], sort=False)
    items, item_ids = pd.factorize(item_ids[item_codes[keep]], sort=False)
    times = inter["timestamp"].to_numpy()[keep]
    order = np.lexsort((np.arange(len(users)), times, users))
    users, items, times = users[order], items[order].astype(np.int32), times[order].astype(np.int64)

    lengths = np.bincount(users, minlength=len(user_ids))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    sequences = pd.DataFrame({"user_idx": np.arange(len(user_ids), dtype=np.int32),
                              "user_id": np.asarray(user_ids, dtype=object).astype(str),
                              "items": _list_column(offsets, items),
                              "timestamps": _list_column(offsets, times)})

    # training part = every position but each user's last two (validation and test targets)
    position = np.arange(len(items)) - np.repeat(offsets[:-1], lengths)
    in_train = position < np.repeat(lengths - 2, lengths)
    train_count = np.bincount(items[in_train], minlength=len(item_ids)).astype(np.int64)
    log_count = np.log1p(train_count.astype(np.float64))
    span = log_count.max() - log_count.min()
    popularity = (log_count - log_count.min()) / span if span > 0 else np.zeros_like(log_count)

    items_table = _items_table(pd.Index(item_ids, dtype=object).astype(str), raw, cfg)
    tag_columns, tags = _category_tags(items_table["category_path"].tolist(), cfg.num_levels)
    items_table["train_count"] = train_count
    items_table["popularity"] = popularity
    for name, values in tag_columns.items():
        items_table[name] = values
    report["items_without_metadata"] = int((~items_table["has_metadata"]).sum())
    if report["items_without_metadata"]:
        log.warning("%d of %d items have no metadata; their text is %r", report["items_without_metadata"],
                    len(items_table), cfg.missing_text)
    return items_table, sequences, tags, report


def _items_table(item_ids: pd.Index, raw: RawData, cfg: DataConfig) -> pd.DataFrame:
    meta = raw.items.set_index("item_id").reindex(item_ids)
    has_meta = item_ids.isin(raw.items["item_id"])
    paths = [list(p) if isinstance(p, (list, tuple, np.ndarray)) else [] for p in meta["category_path"].to_numpy()]
    if raw.drop_category_root:
        paths = [p[1:] for p in paths]
    title = meta["title"].fillna("").astype(str).to_numpy()
    brand = meta["brand"].fillna("").astype(str).to_numpy()
    free = meta["free_text"].fillna("").astype(str).to_numpy()
    shown = paths if raw.category_in_text else [[] for _ in paths]
    text = [item_text(t, b, p, f) for t, b, p, f in zip(title, brand, shown, free)]
    text = [t if t else cfg.missing_text.format(item_id=i) for t, i in zip(text, item_ids)]
    return pd.DataFrame({
        "item_idx": np.arange(len(item_ids), dtype=np.int32),
        "item_id": np.asarray(item_ids, dtype=object),
        "title": title, "brand": brand, "category_path": paths, "text": text,
        "has_metadata": np.asarray(has_meta, dtype=bool),
    })


# ----------------------------------------------------------------------------- the stage
def _source_files(source: str, paths: dict[str, Any]) -> tuple[dict[str, Path], dict[str, Any]]:
    """Input files (name -> path, checked readable) and the source part of the stage config."""
    if source == "amazon2014":
        _expect(source, paths, {"reviews", "meta"}, set())
        reviews = check_readable(paths["reviews"], "reviews")
        meta = check_readable(paths["meta"], "metadata")
        return {reviews.name: reviews, meta.name: meta}, {"kind": source}
    if source == "recbole":
        _expect(source, paths, {"dataset"}, set())
        inter, item = resolve_recbole(paths["dataset"])
        files = {inter.name: check_readable(inter, "RecBole .inter")}
        if item is not None:
            files[item.name] = check_readable(item, "RecBole .item")
        return files, {"kind": source, "dataset": Path(str(paths["dataset"])).name}
    if source == "csv":
        _expect(source, paths, {"interactions"}, {"items", "columns", "drop_category_root"})
        inter = check_readable(paths["interactions"], "interactions")
        files = {inter.name: inter}
        if paths.get("items") is not None:
            item = check_readable(paths["items"], "items")
            files[f"items:{item.name}"] = item
        columns = paths.get("columns") or Columns()
        return files, {"kind": source, "columns": asdict(columns),
                       "drop_category_root": bool(paths.get("drop_category_root", False))}
    raise PrismrecError(f"unknown data source {source!r}: expected one of {', '.join(SOURCES)}")


def _expect(source: str, paths: dict[str, Any], required: set[str], optional: set[str]) -> None:
    missing = required - {k for k, v in paths.items() if v is not None}
    unknown = set(paths) - required - optional
    if missing or unknown:
        raise PrismrecError(f"source {source!r}: expected arguments {sorted(required)} (optional {sorted(optional)}), "
                            f"missing {sorted(missing)}, unknown {sorted(unknown)}")


def read_source(source: str, paths: dict[str, Any]) -> RawData:
    if source == "amazon2014":
        return read_amazon2014(paths["reviews"], paths["meta"])
    if source == "recbole":
        return read_recbole(paths["dataset"])
    if source == "csv":
        return read_csv_source(paths["interactions"], paths.get("items"), paths.get("columns"),
                               bool(paths.get("drop_category_root", False)))
    raise PrismrecError(f"unknown data source {source!r}: expected one of {', '.join(SOURCES)}")


def prepare_dataset(source: str, out: str | Path, cfg: DataConfig, force: bool = False, **paths: Any) -> Path:
    """Prepare ``RUN_DIR/data`` from a raw source; returns the run directory.

    ``source`` = ``amazon2014`` (``reviews=``, ``meta=``), ``recbole`` (``dataset=``: ``ml-100k`` or a directory) or ``csv`` (``interactions=``, optional ``items=``, ``columns=Columns(...)``,
    ``drop_category_root=``). Skipped when the stage exists with the same config and
    input files unless ``force``. If this call created ``out`` and fails, ``out`` is removed.
    """
    out = Path(out)
    created = not out.exists()
    try:
        files, source_config = _source_files(source, paths)
        inputs = {name: file_fingerprint(path) for name, path in files.items()}
        config = {"data": asdict(cfg), "source": source_config}
        stage = out / "data"
        if not force and is_current(stage, stage_fingerprint_for(config, inputs)):
            log.info("%s is up to date (same inputs and config); use --force to recompute", stage)
            return out
        log.info("reading %s", ", ".join(str(p) for p in files.values()))
        started = time.time()
        raw = read_source(source, paths)
        items, sequences, tags, report = build_tables(raw, cfg)
        del raw
        with build_stage(stage, config=config, inputs=inputs, extra={"report": report},
                         started=started) as tmp:
            write_prepared(tmp, items, sequences, tags)
        log.info("prepared %d users, %d items, %d interactions -> %s", len(sequences), len(items),
                 int(items["train_count"].sum()) + 2 * len(sequences), stage)
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    return out


# ----------------------------------------------------------------------------- summary
def summarize(run_dir: str | Path) -> dict[str, Any]:
    """Facts about a prepared run (``prismrec info``)."""
    data = load_prepared(run_dir)
    manifest = read_json(Path(run_dir) / "data" / "manifest.json")
    report = manifest.get("report", {})
    lengths = data.sequences["items"].map(len).to_numpy(dtype=np.int64)
    counts = data.items["train_count"].to_numpy(dtype=np.int64)
    depth = data.items["category_path"].map(len).to_numpy(dtype=np.int64)
    H = data.config.max_history
    return {
        "users": data.num_users,
        "items": data.num_items,
        "interactions": int(lengths.sum()),
        "source": manifest.get("config", {}).get("source", {}),
        "sequence_length": {"min": int(lengths.min()), "mean": round(float(lengths.mean()), 4),
                            "median": float(np.median(lengths)), "max": int(lengths.max()),
                            f"share_over_{H}": round(float((lengths > H).mean()), 4)},
        "splits": {"train": int(np.maximum(lengths - 3, 0).sum()), "valid": data.num_users, "test": data.num_users},
        "tag_vocab": {f"level_{level}": len(names) - 1 for level, names in enumerate(data.tags, start=1)},
        "category_depth": {str(d): int(n) for d, n in enumerate(np.bincount(depth)) if n},
        "popularity": {"train_interactions": int(counts.sum()), "train_count_min": int(counts.min()),
                       "train_count_median": float(np.median(counts)), "train_count_max": int(counts.max()),
                       "items_not_in_training": int((counts == 0).sum())},
        "items_without_metadata": int((~data.items["has_metadata"].to_numpy(dtype=bool)).sum()),
        "duplicate_metadata_rows": report.get("duplicate_metadata_rows", 0),
        "raw": report.get("raw", {}),
        "k_core": report.get("k_core", {}),
    }
