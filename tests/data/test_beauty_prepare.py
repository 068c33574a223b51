"""Integration: the shared Amazon 2014 Beauty 5-core files give the facts in their README."""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from prismrec.cli import main
from prismrec.data.dataset import load_prepared

BEAUTY = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "amazon2014" / "beauty"
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def beauty_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("beauty") / "run"
    argv = ["prismrec", "prepare", "amazon2014", "--reviews", str(BEAUTY / "reviews_Beauty_5.json.gz"),
            "--meta", str(BEAUTY / "meta_Beauty.json.gz"), "--out", str(run)]
    old = sys.argv
    sys.argv = argv
    try:
        main()
    finally:
        sys.argv = old
    return run


def test_beauty_info_json(beauty_run, monkeypatch, capsys):
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["prismrec", "info", str(beauty_run), "--json"])
    main()
    info = json.loads(capsys.readouterr().out)
    assert (info["users"], info["items"], info["interactions"]) == (22_363, 12_101, 198_502)
    assert info["raw"] == {"users": 22_363, "items": 12_101, "interactions": 198_502}
    assert info["k_core"]["removed_interactions"] == 0 and info["k_core"]["passes"] == 1   # already 5-core
    seq = info["sequence_length"]
    assert seq["min"] == 5 and seq["max"] == 204 and round(seq["mean"], 2) == 8.88
    assert round(100 * seq["share_over_20"], 1) == 5.1
    # README depths include the root "Beauty": 2/3/4/5/6 -> 104/1,631/7,565/2,450/351; we drop the root
    assert info["category_depth"] == {"1": 104, "2": 1631, "3": 7565, "4": 2450, "5": 351}
    assert info["items_without_metadata"] == 0 and info["duplicate_metadata_rows"] == 0
    assert info["splits"] == {"train": 198_502 - 3 * 22_363, "valid": 22_363, "test": 22_363}
    assert info["popularity"]["train_interactions"] == 198_502 - 2 * 22_363


def test_beauty_tables(beauty_run):
    data = load_prepared(beauty_run)
    items = data.items
    assert (items["title"] == "").sum() == 7                       # README: 7 items have no title
    assert not items["title"].str.contains("&#39;|&amp;", regex=True).any()
    assert items["brand"].str.contains("Dr. Scholl's", regex=False).any()
    assert not items["category_path"].map(lambda p: len(p) > 0 and p[0] == "Beauty").any()
    tags = data.item_tags()
    assert (tags[:, 0] > 0).all()                                   # every item has a level-1 category
    assert (tags[:, 1] == 0).sum() == 104                           # depth-1 paths pad level 2
    # timestamps are chronological within each user
    assert all(np.all(np.diff(np.asarray(t)) >= 0) for t in data.sequences["timestamps"])
    # first user of the file: README says reviews are stored per user chronologically -> file order kept
    assert items["item_id"].iloc[list(data.sequences["items"].iloc[0][:3])].tolist() == \
        ["B004756YJA", "B004ZT0SSG", "B0020YLEYK"]


def test_readme_examples_name_real_beauty_items(beauty_run):
    """The README's `recommend` and serving examples run on a prepared Beauty: their item ids exist."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    examples = [line for line in readme.splitlines() if "--history" in line or '"history' in line]
    named = set(re.findall(r"\bB0[0-9A-Z]{8}\b", "\n".join(examples)))
    assert len(named) >= 2
    assert named <= set(load_prepared(beauty_run).items["item_id"])
