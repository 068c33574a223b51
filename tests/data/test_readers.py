"""Readers: Amazon 2014 (JSON / Python-literal, gz / plain), RecBole atomic files, CSV / Parquet."""

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from prismrec.data.readers import (Columns, embedded_recbole_dir, parse_record, read_amazon2014, read_csv_source,
                                   read_recbole)
from prismrec.errors import PrismrecError


def write_lines(path, lines, gz=False):
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_amazon_json_reviews_and_python_literal_meta(tmp_path, gz):
    suffix = ".json.gz" if gz else ".json"
    reviews = write_lines(tmp_path / f"reviews{suffix}", [
        json.dumps({"reviewerID": "U1", "asin": "A", "unixReviewTime": 100, "overall": 5.0}),
        json.dumps({"reviewerID": "U1", "asin": "B", "unixReviewTime": "200"}),
        "",
        json.dumps({"reviewerID": "U2", "asin": "A", "unixReviewTime": 150}),
    ], gz)
    meta = write_lines(tmp_path / f"meta{suffix}", [
        repr({"asin": "A", "title": "Dr. Scholl&#39;s  Gel", "brand": "Dr. Scholl&#39;s",
              "categories": [["Beauty", "Makeup", "Eyes"], ["Beauty", "Other"]], "price": 3.5}),
        repr({"asin": "B", "categories": [["Beauty"]], "related": {"also_bought": ["A"]}, "flag": True}),
        json.dumps({"asin": "C", "title": "Strict &amp; JSON"}),
    ], gz)
    raw = read_amazon2014(reviews, meta)
    assert raw.interactions["user_id"].tolist() == ["U1", "U1", "U2"]
    assert raw.interactions["timestamp"].tolist() == [100, 200, 150]
    assert raw.interactions["timestamp"].dtype == np.int64
    items = raw.items.set_index("item_id")
    assert items.loc["A", "title"] == "Dr. Scholl's Gel"          # unescaped, whitespace collapsed
    assert items.loc["A", "brand"] == "Dr. Scholl's"
    assert items.loc["A", "category_path"] == ["Beauty", "Makeup", "Eyes"]   # first path only
    assert items.loc["B", "title"] == "" and items.loc["B", "category_path"] == ["Beauty"]
    assert items.loc["C", "title"] == "Strict & JSON"
    assert raw.drop_category_root


def test_parse_record_never_evaluates_code(tmp_path):
    with pytest.raises(PrismrecError, match=r"x\.json:7: malformed line"):
        parse_record("{'asin': __import__('os').getcwd()}", tmp_path / "x.json", 7)
    assert parse_record("{'a': None, 'b': True}", tmp_path / "x.json", 1) == {"a": None, "b": True}


def test_amazon_duplicate_metadata_keeps_first(tmp_path, caplog):
    reviews = write_lines(tmp_path / "r.json", [json.dumps({"reviewerID": "U", "asin": "A", "unixReviewTime": 1})])
    meta = write_lines(tmp_path / "m.json", [repr({"asin": "A", "title": "first"}), repr({"asin": "A", "title": "second"}),
                                             repr({"asin": "A", "title": "third"})])
    with caplog.at_level("WARNING", logger="prismrec"):
        raw = read_amazon2014(reviews, meta)
    assert raw.items["title"].tolist() == ["first"]
    assert raw.duplicate_items == 2
    assert "2 duplicate metadata row(s)" in caplog.text


def test_recbole_atomic_files(tmp_path):
    (tmp_path / "toy.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                        "u1\ti1\t3\t881250949\nu1\ti2\t4\t881250950.0\n")
    (tmp_path / "toy.item").write_text("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
                                       "i1\tToy \"Story\"\t1995\tAnimation Children's Comedy\ni2\tHeat\t\t\n")
    raw = read_recbole(tmp_path)
    assert raw.interactions["timestamp"].tolist() == [881250949, 881250950]
    items = raw.items.set_index("item_id")
    assert items.loc["i1", "title"] == 'Toy "Story" (1995)'
    assert items.loc["i1", "category_path"] == ["Animation"]      # single level: the first genre
    assert items.loc["i1", "free_text"] == "Genres: Animation, Children's, Comedy"
    assert items.loc["i2", "title"] == "Heat" and items.loc["i2", "category_path"] == []
    assert not raw.drop_category_root


def test_recbole_embedded_ml100k_is_found_without_importing_recbole():
    import sys

    directory = embedded_recbole_dir("ml-100k")
    assert (directory / "ml-100k.inter").exists() and (directory / "ml-100k.item").exists()
    assert "recbole" not in sys.modules


def test_csv_with_custom_columns_and_items(tmp_path):
    inter = tmp_path / "log.tsv"
    inter.write_text("who\twhat\twhen\nx\t10\t5\ny\t11\t3\n")
    items = tmp_path / "items.csv"
    items.write_text("what,name,maker,cats,blurb\n10,Pen &amp; ink,Acme,Office/Writing/Pens,blue\n")
    cols = Columns(user="who", item="what", time="when", title="name", brand="maker", category="cats",
                   text="blurb", category_sep="/")
    raw = read_csv_source(inter, items, cols, drop_category_root=True)
    assert raw.interactions.to_dict("list") == {"user_id": ["x", "y"], "item_id": ["10", "11"], "timestamp": [5, 3]}
    row = raw.items.iloc[0]
    assert (row.item_id, row.title, row.brand, row.category_path, row.free_text) == \
        ("10", "Pen & ink", "Acme", ["Office", "Writing", "Pens"], "blue")
    assert raw.drop_category_root


def test_parquet_interactions_with_datetime_and_list_categories(tmp_path):
    inter = tmp_path / "log.parquet"
    pd.DataFrame({"user_id": ["a", "a"], "item_id": ["p", "q"],
                  "timestamp": pd.to_datetime(["2020-01-01", "2020-01-02"])}).to_parquet(inter)
    items = tmp_path / "items.parquet"
    pd.DataFrame({"item_id": ["p"], "title": ["P"], "category": [["Top", "Mid"]]}).to_parquet(items)
    raw = read_csv_source(inter, items)
    assert raw.interactions["timestamp"].tolist() == [1577836800, 1577923200]
    assert raw.items.iloc[0].category_path == ["Top", "Mid"]
