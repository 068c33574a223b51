"""``prismrec prepare`` / ``prismrec info`` as the user runs them: bad input gives one line, exit 2,
and no half-written run directory."""

import gzip
import json

import pytest

from prismrec.data.config import DataConfig
from prismrec.data.prepare import prepare_dataset
from prismrec.errors import PrismrecError
from cli_helpers import run_cli


def review_lines(n_users=6, per_user=5, n_items=5):
    return [json.dumps({"reviewerID": f"U{u}", "asin": f"I{(u + j) % n_items}", "unixReviewTime": 1000 + j})
            for u in range(n_users) for j in range(per_user)]


def meta_lines(n_items=5):
    return [repr({"asin": f"I{i}", "title": f"Item &amp; {i}", "brand": "B",
                  "categories": [["Root", f"C{i % 2}", "Leaf"]]}) for i in range(n_items)]


@pytest.fixture
def files(tmp_path):
    rev, meta = tmp_path / "reviews.json", tmp_path / "meta.json"
    rev.write_text("\n".join(review_lines()) + "\n")
    meta.write_text("\n".join(meta_lines()) + "\n")
    return rev, meta


def prepare_amazon(monkeypatch, capsys, rev, meta, out, *extra):
    return run_cli(monkeypatch, capsys, "prepare", "amazon2014", "--reviews", rev, "--meta", meta, "--out", out, *extra)


def assert_user_error(code, err, *fragments):
    assert code == 2
    line = err.strip()
    assert line.startswith("error: ") and "\n" not in line and "Traceback" not in err
    for fragment in fragments:
        assert fragment in line


def test_prepare_and_info_json(monkeypatch, capsys, files, tmp_path):
    rev, meta = files
    code, out, _ = prepare_amazon(monkeypatch, capsys, rev, meta, tmp_path / "run")
    assert code == 0 and "users / items / interactions" in out
    code, out, _ = run_cli(monkeypatch, capsys, "info", tmp_path / "run", "--json")
    info = json.loads(out)
    assert code == 0 and (info["users"], info["items"], info["interactions"]) == (6, 5, 30)
    assert (tmp_path / "run" / "config.yaml").exists()


def test_missing_file(monkeypatch, capsys, files, tmp_path):
    _, meta = files
    code, _, err = prepare_amazon(monkeypatch, capsys, tmp_path / "nope.json.gz", meta, tmp_path / "run")
    assert_user_error(code, err, "nope.json.gz", "reviews file not found")
    assert not (tmp_path / "run").exists()


def test_unreadable_file(monkeypatch, capsys, files, tmp_path):
    rev, _ = files
    (tmp_path / "adir").mkdir()
    code, _, err = prepare_amazon(monkeypatch, capsys, rev, tmp_path / "adir", tmp_path / "run")
    assert_user_error(code, err, "adir", "metadata must be a file")
    assert not (tmp_path / "run").exists()


def test_corrupt_gzip(monkeypatch, capsys, files, tmp_path):
    _, meta = files
    truncated = tmp_path / "reviews.json.gz"
    truncated.write_bytes(gzip.compress(("\n".join(review_lines(n_users=300)) + "\n").encode())[:-200])
    code, _, err = prepare_amazon(monkeypatch, capsys, truncated, meta, tmp_path / "run")
    assert_user_error(code, err, "reviews.json.gz", "corrupt gzip file")
    assert not (tmp_path / "run").exists()
    fake = tmp_path / "fake.json.gz"
    fake.write_text("not gzip\n")
    code, _, err = prepare_amazon(monkeypatch, capsys, fake, meta, tmp_path / "run")
    assert_user_error(code, err, "fake.json.gz", "corrupt gzip file")


def test_malformed_line_reports_line_number(monkeypatch, capsys, files, tmp_path):
    rev, _ = files
    meta = tmp_path / "meta.json.gz"
    lines = meta_lines()
    lines[2] = "{'asin': 'I2', 'title': 'broken"
    meta.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    code, _, err = prepare_amazon(monkeypatch, capsys, rev, meta, tmp_path / "run")
    assert_user_error(code, err, "meta.json.gz:3:", "malformed line")
    assert not (tmp_path / "run").exists()


def test_missing_required_field(monkeypatch, capsys, files, tmp_path):
    _, meta = files
    rev = tmp_path / "r.json"
    lines = review_lines()
    lines[1] = json.dumps({"reviewerID": "U0", "unixReviewTime": 5})
    rev.write_text("\n".join(lines) + "\n")
    code, _, err = prepare_amazon(monkeypatch, capsys, rev, meta, tmp_path / "run")
    assert_user_error(code, err, "r.json:2:", "missing required field 'asin'")
    assert not (tmp_path / "run").exists()


def test_non_numeric_timestamp(monkeypatch, capsys, files, tmp_path):
    _, meta = files
    rev = tmp_path / "r.json"
    lines = review_lines()
    lines[3] = json.dumps({"reviewerID": "U0", "asin": "I1", "unixReviewTime": "10/21/2011"})
    rev.write_text("\n".join(lines) + "\n")
    code, _, err = prepare_amazon(monkeypatch, capsys, rev, meta, tmp_path / "run")
    assert_user_error(code, err, "r.json:4:", "'unixReviewTime' must be a numeric Unix timestamp", "10/21/2011")
    assert not (tmp_path / "run").exists()


def test_non_numeric_timestamp_csv(monkeypatch, capsys, tmp_path):
    inter = tmp_path / "log.csv"
    inter.write_text("user_id,item_id,timestamp\na,x,1\na,y,2\nb,x,soon\n")
    code, _, err = run_cli(monkeypatch, capsys, "prepare", "csv", "--interactions", inter, "--out", tmp_path / "run")
    assert_user_error(code, err, "log.csv:4:", "'timestamp' must be a numeric Unix timestamp", "soon")
    assert not (tmp_path / "run").exists()


def test_csv_missing_column(monkeypatch, capsys, tmp_path):
    inter = tmp_path / "log.csv"
    inter.write_text("user,item_id,timestamp\na,x,1\n")
    code, _, err = run_cli(monkeypatch, capsys, "prepare", "csv", "--interactions", inter, "--out", tmp_path / "run")
    assert_user_error(code, err, "log.csv", "missing required field/column 'user_id'")
    assert not (tmp_path / "run").exists()


def test_recbole_bad_header(monkeypatch, capsys, tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "ds.inter").write_text("user_id\titem_id:token\ttimestamp:float\n1\t2\t3\n")
    code, _, err = run_cli(monkeypatch, capsys, "prepare", "recbole", tmp_path / "ds", "--out", tmp_path / "run")
    assert_user_error(code, err, "ds.inter:1:", "'name:type'")
    assert not (tmp_path / "run").exists()


def test_unknown_dataset_and_source(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "prepare", "recbole", "ml-1b", "--out", tmp_path / "run")
    assert_user_error(code, err, "unknown dataset 'ml-1b'", "ml-100k")
    assert not (tmp_path / "run").exists()
    code, _, err = run_cli(monkeypatch, capsys, "prepare", "movielens", "--out", tmp_path / "run")
    assert code == 2 and "movielens" in err
    with pytest.raises(PrismrecError, match="unknown data source 'movielens'"):
        prepare_dataset("movielens", tmp_path / "run", DataConfig())
    assert not (tmp_path / "run").exists()


def test_k_core_that_empties_the_data(monkeypatch, capsys, files, tmp_path):
    rev, meta = files
    code, _, err = prepare_amazon(monkeypatch, capsys, rev, meta, tmp_path / "run", "--set", "data.k_core=50")
    assert_user_error(code, err, "50-core", "removes all 30 interactions")
    assert not (tmp_path / "run").exists()


def test_failure_keeps_an_existing_run_directory_intact(monkeypatch, capsys, files, tmp_path):
    rev, meta = files
    run = tmp_path / "run"
    assert prepare_amazon(monkeypatch, capsys, rev, meta, run)[0] == 0
    before = (run / "data" / "manifest.json").read_text()
    code, _, err = prepare_amazon(monkeypatch, capsys, rev, tmp_path / "missing.json", run, "--force")
    assert_user_error(code, err, "missing.json")
    assert (run / "data" / "manifest.json").read_text() == before
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "data"]   # no temporary leftovers


def test_duplicate_metadata_rows_keep_first(monkeypatch, capsys, files, tmp_path, caplog):
    rev, _ = files
    meta = tmp_path / "meta_dup.json"
    lines = meta_lines() + [repr({"asin": "I1", "title": "Second copy"}), repr({"asin": "I3", "title": "Again"})]
    meta.write_text("\n".join(lines) + "\n")
    with caplog.at_level("WARNING", logger="prismrec"):
        code, _, _ = prepare_amazon(monkeypatch, capsys, rev, meta, tmp_path / "run")
    assert code == 0
    assert "2 duplicate metadata row(s)" in caplog.text and "keeping the first" in caplog.text
    code, out, _ = run_cli(monkeypatch, capsys, "info", tmp_path / "run", "--json")
    info = json.loads(out)
    assert info["duplicate_metadata_rows"] == 2
    from prismrec.data.dataset import load_prepared

    titles = dict(zip(*load_prepared(tmp_path / "run").items[["item_id", "title"]].T.values))
    assert titles["I1"] == "Item & 1" and titles["I3"] == "Item & 3"


def test_items_without_metadata_get_fallback_text_and_are_counted(monkeypatch, capsys, files, tmp_path, caplog):
    rev, _ = files
    meta = tmp_path / "meta_partial.json"
    meta.write_text("\n".join(meta_lines()[:3]) + "\n")          # I3 and I4 have no metadata
    with caplog.at_level("WARNING", logger="prismrec"):
        code, _, _ = prepare_amazon(monkeypatch, capsys, rev, meta, tmp_path / "run")
    assert code == 0 and "2 of 5 items have no metadata" in caplog.text
    code, out, _ = run_cli(monkeypatch, capsys, "info", tmp_path / "run", "--json")
    assert json.loads(out)["items_without_metadata"] == 2
    from prismrec.data.dataset import load_prepared

    items = load_prepared(tmp_path / "run").items.set_index("item_id")
    assert items.loc["I4", "text"] == "Item I4" and not items.loc["I4", "has_metadata"]
    assert items.loc["I0", "text"] == "Title: Item & 0; Brand: B; Category: C0 > Leaf"


def test_info_on_a_directory_without_prepared_data(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "info", tmp_path)
    assert_user_error(code, err, "stage 'data' not found", "prismrec prepare")


def test_prepare_ml100k_embedded(monkeypatch, capsys, tmp_path):
    code, _, _ = run_cli(monkeypatch, capsys, "prepare", "recbole", "ml-100k", "--out", tmp_path / "run")
    assert code == 0
    code, out, _ = run_cli(monkeypatch, capsys, "info", tmp_path / "run", "--json")
    info = json.loads(out)
    # ML-100K: 943 users x 1,682 movies, 100,000 ratings; the 5-core keeps every user (each rated >= 20)
    assert info["users"] == 943 and info["raw"] == {"users": 943, "items": 1682, "interactions": 100000}
    assert info["items"] < 1682 and info["interactions"] < 100000
    assert info["items_without_metadata"] == 0
    assert info["tag_vocab"]["level_1"] in (18, 19) and info["tag_vocab"]["level_2"] == 0
    from prismrec.data.dataset import load_prepared

    items = load_prepared(tmp_path / "run").items.set_index("item_id")
    assert items.loc["1", "title"] == "Toy Story (1995)"
    assert items.loc["1", "category_path"].tolist() == ["Animation"]
    assert items.loc["1", "text"] == "Title: Toy Story (1995); Genres: Animation, Children's, Comedy"


def test_prepare_csv_with_custom_columns_and_info_table(monkeypatch, capsys, tmp_path):
    inter = tmp_path / "log.csv"
    inter.write_text("who,what,when\n" + "".join(f"u{u},i{(u + j) % 6},{100 * j}\n" for u in range(8) for j in range(6)))
    items = tmp_path / "items.csv"
    items.write_text("what,title,category\n" + "".join(f"i{i},Thing {i},Shop|Dept{i % 3}|Shelf\n" for i in range(6)))
    code, _, err = run_cli(monkeypatch, capsys, "prepare", "csv", "--interactions", inter, "--items", items,
                           "--user-col", "who", "--item-col", "what", "--time-col", "when", "--category-sep", "|",
                           "--drop-category-root", "--out", tmp_path / "run")
    assert code == 0, err
    code, out, _ = run_cli(monkeypatch, capsys, "info", tmp_path / "run")
    assert code == 0 and "8 / 6 / 48" in out and "1: 3, 2: 3" in out
    from prismrec.data.dataset import load_prepared

    text = load_prepared(tmp_path / "run").items.set_index("item_id").loc["i1", "text"]
    assert text == "Title: Thing 1; Category: Dept1 > Shelf"


@pytest.mark.parametrize("command", [["prepare"], ["prepare", "amazon2014"], ["prepare", "recbole"],
                                     ["prepare", "csv"], ["info"]])
def test_every_command_has_help(monkeypatch, capsys, command):
    code, out, _ = run_cli(monkeypatch, capsys, *command, "--help")
    assert code == 0 and "Usage:" in out and "--help" in out
