"""Preparation protocol: k-core, stable order, training-only popularity, tags, text, splits, skipping."""

import json

import numpy as np
import pandas as pd
import pytest

from prismrec.data.config import DataConfig
from prismrec.data.dataset import load_prepared
from prismrec.data.prepare import build_tables, k_core, prepare_dataset, summarize
from prismrec.data.readers import ITEM_COLUMNS, RawData
from prismrec.errors import PrismrecError


def raw_data(rows, items=(), drop_root=True):
    """RawData from (user, item, time) rows and (item_id, title, brand, path, free_text) items."""
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).astype({"timestamp": np.int64})
    return RawData(inter, pd.DataFrame(list(items), columns=ITEM_COLUMNS), drop_category_root=drop_root)


def naive_k_core(rows, user_min, item_min):
    rows = list(rows)
    while True:
        uc, ic = {}, {}
        for u, i, _ in rows:
            uc[u] = uc.get(u, 0) + 1
            ic[i] = ic.get(i, 0) + 1
        kept = [r for r in rows if uc[r[0]] >= user_min and ic[r[1]] >= item_min]
        if len(kept) == len(rows):
            return kept
        rows = kept


def test_k_core_iterates_until_stable():
    # pass 1 drops items 4 and 5 (one interaction each); that leaves users 2 and 3 with two
    # items, so pass 2 drops them; pass 3 finds nothing more to drop
    users = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    items = np.array([0, 1, 2, 0, 1, 2, 0, 3, 5, 3, 1, 4])
    keep, removed = k_core(users, items, user_min=3, item_min=2)
    assert keep.tolist() == [True] * 6 + [False] * 6
    assert removed == [2, 4, 0]


def test_k_core_matches_naive_reference():
    rng = np.random.default_rng(3)
    rows = [(int(u), int(i), 0) for u, i in zip(rng.integers(0, 60, 900), rng.zipf(1.6, 900) % 80)]
    users = np.array([r[0] for r in rows])
    items = np.array([r[1] for r in rows])
    keep, _ = k_core(users, items, user_min=5, item_min=5)
    expected = naive_k_core(rows, 5, 5)
    assert [r for r, k in zip(rows, keep) if k] == expected
    assert 0 < len(expected) < len(rows)


def test_sequences_sorted_by_time_with_stable_ties():
    rows = [("u", "c", 30), ("u", "a", 10), ("u", "b", 10), ("u", "d", 5), ("u", "e", 10)]
    items, seqs, _, _ = build_tables(raw_data(rows), DataConfig(k_core=1))
    ids = items["item_id"].to_numpy()
    assert [ids[i] for i in seqs.loc[0, "items"]] == ["d", "a", "b", "e", "c"]
    assert list(seqs.loc[0, "timestamps"]) == [5, 10, 10, 10, 30]


def test_popularity_counts_training_part_only():
    # "t" is only ever a validation/test target: counting those would give it a count > 0.
    rows = []
    for u in range(4):
        rows += [(f"u{u}", "a", 1), (f"u{u}", "b", 2), (f"u{u}", "c", 3), (f"u{u}", "t", 4), (f"u{u}", "t", 5)]
    rows += [("u9", "a", 1), ("u9", "a", 2), ("u9", "b", 3)]   # train a, valid a (not counted), test b
    items, seqs, _, _ = build_tables(raw_data(rows), DataConfig(k_core=1))
    count = dict(zip(items["item_id"], items["train_count"]))
    assert count == {"a": 5, "b": 4, "c": 4, "t": 0}
    pop = dict(zip(items["item_id"], items["popularity"]))
    assert pop["t"] == 0.0 and pop["a"] == 1.0
    assert pop["b"] == pytest.approx(np.log1p(4) / np.log1p(5))
    # the same definition from the split logic: training part = every position but the last two
    lengths = seqs["items"].map(len).to_numpy()
    train_items = np.concatenate([s[:-2] for s in seqs["items"]])
    assert np.array_equal(items["train_count"].to_numpy(), np.bincount(train_items, minlength=len(items)))
    assert lengths.sum() == len(rows)


def test_splits_never_leak(tmp_path):
    from prismrec.data.synthetic import write_synthetic_run

    data = load_prepared(write_synthetic_run(tmp_path / "run", num_users=40, min_len=3, max_len=30))
    seqs = [np.asarray(s) for s in data.sequences["items"]]
    train, valid, test = data.examples("train"), data.examples("valid"), data.examples("test")
    assert np.array_equal(test.target, [s[-1] for s in seqs])
    assert np.array_equal(valid.target, [s[-2] for s in seqs])
    assert len(train) == sum(len(s) - 3 for s in seqs)
    H = data.config.max_history
    for ex, cut in ((train, None), (valid, -2), (test, -1)):
        for k in range(len(ex)):
            s = seqs[ex.user[k]]
            hist = ex.history[k][ex.history[k] >= 0]
            n = ex.length[k]
            # the history is exactly the n items before the target position, never including it or later items
            pos = n if cut is None else len(s) + cut
            if cut is None:
                # train target positions run 1..len-3: find the position consistent with this history
                positions = [p for p in range(1, len(s) - 2) if s[p] == ex.target[k] and
                             np.array_equal(s[max(0, p - H):p], hist)]
                assert positions, "training example not a prefix -> next item of the training part"
                assert max(positions) <= len(s) - 3
            else:
                assert np.array_equal(s[max(0, pos - H):pos], hist) and ex.target[k] == s[pos]
            assert n <= H


def test_category_levels_drop_root_and_use_prefix_tags():
    rows = [("u", i, t) for t, i in enumerate("abcd")]
    meta = [("a", "A", "", ["Beauty", "Makeup", "Eyes", "Brow", "Deep"], ""),
            ("b", "B", "", ["Beauty", "Skin", "Eyes"], ""),
            ("c", "C", "", ["Beauty"], ""),
            ("d", "D", "", ["Beauty", "Makeup"], "")]
    items, _, tags, _ = build_tables(raw_data(rows, meta), DataConfig(k_core=1, num_levels=3))
    by_id = items.set_index("item_id")
    assert by_id.loc["a", "category_path"] == ["Makeup", "Eyes", "Brow", "Deep"]
    assert by_id.loc["c", "category_path"] == []
    table = {(r.level, r.tag_idx): r.tag for r in tags.itertuples()}
    name = lambda item, level: table.get((level, by_id.loc[item, f"tag_{level}"]), "<pad>")
    assert [name("a", lv) for lv in (1, 2, 3)] == ["Makeup", "Makeup > Eyes", "Makeup > Eyes > Brow"]
    assert [name("b", lv) for lv in (1, 2, 3)] == ["Skin", "Skin > Eyes", "<pad>"]   # a different "Eyes"
    assert [by_id.loc["c", f"tag_{lv}"] for lv in (1, 2, 3)] == [0, 0, 0]
    assert [by_id.loc["d", f"tag_{lv}"] for lv in (2, 3)] == [0, 0]
    assert sorted(tags.groupby("level").size().tolist()) == [1, 2, 2]


def test_item_text_template_and_missing_metadata():
    rows = [("u", i, t) for t, i in enumerate(["x", "y", "z", "w"])]
    meta = [("x", "Brow Pen", "Acme", ["Beauty", "Makeup", "Eyes"], ""),
            ("y", "", "Unknown", ["Beauty", "Skin"], ""),
            ("w", "", "", [], "")]
    items, _, _, report = build_tables(raw_data(rows, meta), DataConfig(k_core=1))
    text = dict(zip(items["item_id"], items["text"]))
    assert text["x"] == "Title: Brow Pen; Brand: Acme; Category: Makeup > Eyes"
    assert text["y"] == "Category: Skin"            # missing title skipped, placeholder brand left out
    assert text["z"] == "Item z"                    # no metadata row at all
    assert text["w"] == "Item w"                    # a metadata row with nothing in it
    assert dict(zip(items["item_id"], items["has_metadata"])) == {"x": True, "y": True, "z": False, "w": True}
    assert report["items_without_metadata"] == 1


def _amazon_files(tmp_path, n_users=6):
    rev, meta = tmp_path / "reviews.json", tmp_path / "meta.json"
    lines = [json.dumps({"reviewerID": f"U{u}", "asin": f"I{(u + j) % 5}", "unixReviewTime": 1000 + j})
             for u in range(n_users) for j in range(5)]
    rev.write_text("\n".join(lines) + "\n")
    meta.write_text("\n".join(repr({"asin": f"I{i}", "title": f"T{i}", "categories": [["Root", f"C{i % 2}"]]})
                              for i in range(4)) + "\n")
    return rev, meta


def test_prepare_dataset_skips_when_unchanged_and_recomputes_when_changed(tmp_path, caplog):
    rev, meta = _amazon_files(tmp_path)
    out = tmp_path / "run"
    prepare_dataset("amazon2014", out, DataConfig(), reviews=rev, meta=meta)
    manifest = out / "data" / "manifest.json"
    first = manifest.read_text()
    with caplog.at_level("INFO", logger="prismrec"):
        prepare_dataset("amazon2014", out, DataConfig(), reviews=rev, meta=meta)
    assert "up to date" in caplog.text and manifest.read_text() == first
    (out / "data" / "items.parquet").unlink()   # --force rebuilds even though the manifest matches
    prepare_dataset("amazon2014", out, DataConfig(), force=True, reviews=rev, meta=meta)
    assert (out / "data" / "items.parquet").exists()
    forced = json.loads(manifest.read_text())
    prepare_dataset("amazon2014", out, DataConfig(num_levels=2), reviews=rev, meta=meta)
    assert json.loads(manifest.read_text())["config"]["data"]["num_levels"] == 2
    assert "tag_3" not in load_prepared(out).items.columns
    with meta.open("a") as f:
        f.write(repr({"asin": "I4", "title": "T4"}) + "\n")
    prepare_dataset("amazon2014", out, DataConfig(num_levels=2), reviews=rev, meta=meta)
    assert json.loads(manifest.read_text())["fingerprint"] != forced["fingerprint"]
    assert load_prepared(out).items["has_metadata"].all()


def test_summarize_reports_the_facts(tmp_path):
    rev, meta = _amazon_files(tmp_path)
    prepare_dataset("amazon2014", tmp_path / "run", DataConfig(), reviews=rev, meta=meta)
    s = summarize(tmp_path / "run")
    assert (s["users"], s["items"], s["interactions"]) == (6, 5, 30)
    assert s["sequence_length"]["min"] == s["sequence_length"]["max"] == 5
    assert s["splits"] == {"train": 12, "valid": 6, "test": 6}
    assert s["tag_vocab"] == {"level_1": 2, "level_2": 0, "level_3": 0}
    assert s["items_without_metadata"] == 1
    assert s["popularity"]["train_interactions"] == 18
    assert s["k_core"]["removed_interactions"] == 0


def test_k_core_that_empties_the_data_is_an_error():
    rows = [("u", "a", 1), ("u", "b", 2), ("v", "a", 3)]
    with pytest.raises(PrismrecError, match="5-core .* removes all 3 interactions"):
        build_tables(raw_data(rows), DataConfig(k_core=5))


def test_time_buckets_and_history_truncation():
    hour = 3600
    rows = [("u", f"i{j}", t) for j, t in enumerate([0, 600, 600 + 24 * hour, 600 + 25 * hour] + [10**6 + j for j in range(26)])]
    items, seqs, tags, _ = build_tables(raw_data(rows), DataConfig(k_core=1))
    from prismrec.data.dataset import PreparedData

    data = PreparedData(items=items, sequences=seqs, tags=[["<pad>"]] * 3, config=DataConfig(k_core=1))
    buckets = data.time_buckets()
    # first item: 0 (no previous); 10 minutes: 1 (same hour); 24 h: 1 + floor(log2(25)) = 5; 1 h: 1 + 1 = 2
    assert buckets[:4].tolist() == [0, 1, 5, 2]
    test = data.examples("test")
    assert test.length.tolist() == [20] and test.target.tolist() == [29]
    assert test.history[0].tolist() == list(range(9, 29))          # the 20 most recent, latest last
    assert test.time_bucket[0].tolist() == buckets[9:29].tolist()
