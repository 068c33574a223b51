"""``build_features`` / ``prismrec features``: artefacts, skip when unchanged, --force, clear errors."""


import numpy as np
import pandas as pd
import pytest

from prismrec.artifacts import read_json
from prismrec.data.synthetic import write_synthetic_run
from prismrec.errors import PrismrecError
from prismrec.features import build as build_module
from prismrec.features.build import build_features
from prismrec.features.config import FeatureConfig
from prismrec.features.store import load_features
from cli_helpers import run_cli

FAST = FeatureConfig(device="cpu", gcn_epochs=3, gcn_eval_every=1, collab_dim=16)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    run = write_synthetic_run(tmp_path_factory.mktemp("run"))
    return run, build_features(run, FAST)


def count_calls(monkeypatch, name):
    calls = []
    real = getattr(build_module, name)

    def wrapper(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(build_module, name, wrapper)
    return calls


def test_stage_writes_the_store_contract(built):
    run, stage = built
    assert stage == run / "features"
    feats = load_features(run)
    items = pd.read_parquet(run / "data" / "items.parquet")
    tags = pd.read_parquet(run / "data" / "tags.parquet")
    assert feats.content.shape == (len(items), 384) and feats.content.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats.content, axis=1), 1.0, atol=1e-5)
    assert feats.collab.shape == (len(items), 16) and np.isfinite(feats.collab).all()
    assert len(feats.tag_embeddings) == 3
    for level, table in enumerate(feats.tag_embeddings, start=1):
        assert table.shape == ((tags["level"] == level).sum() + 1, 384)
        assert not table[0].any() and np.allclose(np.linalg.norm(table[1:], axis=1), 1.0, atol=1e-5)
    # items of the same cluster read alike: their text embeddings are closer than other clusters'
    sim = feats.content @ feats.content.T
    same = items["tag_1"].to_numpy()[:, None] == items["tag_1"].to_numpy()[None, :]
    assert sim[same].mean() > sim[~same].mean()


def test_lightgcn_summary_records_the_selected_epoch(built):
    run, stage = built
    summary = read_json(stage / "lightgcn.json")
    recalls = [row["valid_recall@20"] for row in summary["curve"]]
    assert len(recalls) == 3 and summary["epochs_run"] == 3
    assert summary["valid_recall@20"] == max(recalls)
    assert summary["curve"][summary["selected_epoch"] - 1]["valid_recall@20"] == max(recalls)
    manifest = read_json(stage / "manifest.json")
    assert manifest["lightgcn"]["selected_epoch"] == summary["selected_epoch"]
    assert manifest["config"]["features"]["gcn_epochs"] == 3
    # the stage's wall time covers the encoding and LightGCN, not only writing the files
    assert manifest["wall_seconds"] >= summary["encode_seconds"] + summary["seconds"] - 0.02  # both rounded


def test_unchanged_inputs_skip_and_force_recomputes(tmp_path, monkeypatch):
    run = write_synthetic_run(tmp_path)
    calls = count_calls(monkeypatch, "train_lightgcn")
    build_features(run, FAST)
    created = read_json(run / "features" / "manifest.json")["created"]
    build_features(run, FAST)
    assert len(calls) == 1  # skipped
    build_features(run, FeatureConfig(**{**FAST.__dict__, "device": "cpu", "gcn_threads": 2}))
    assert len(calls) == 1  # where and how fast it runs does not make the stage stale
    build_features(run, FAST, force=True)
    assert len(calls) == 2
    build_features(run, FeatureConfig(**{**FAST.__dict__, "gcn_epochs": 2}))
    assert len(calls) == 3  # config changed
    write_synthetic_run(run, seed=1)  # the data stage changed
    build_features(run, FeatureConfig(**{**FAST.__dict__, "gcn_epochs": 2}))
    assert len(calls) == 4
    assert read_json(run / "features" / "manifest.json")["created"] >= created


def test_items_without_text_are_named(tmp_path):
    run = write_synthetic_run(tmp_path)
    path = run / "data" / "items.parquet"
    items = pd.read_parquet(path)
    items.loc[[3, 7], "text"] = ["", "   "]
    items.loc[9, "text"] = None
    items.to_parquet(path, index=False)
    with pytest.raises(PrismrecError, match=r"3 items have empty text, e.g. I00003, I00007, I00009"):
        build_features(run, FAST)
    assert not (run / "features").exists()


def test_missing_data_stage_says_which_command_makes_it(tmp_path):
    with pytest.raises(PrismrecError, match="prismrec prepare"):
        build_features(tmp_path, FAST)


def test_cli_builds_then_skips_and_reports_a_missing_encoder(tmp_path, monkeypatch, capsys, caplog):
    run = write_synthetic_run(tmp_path)
    sets = ["--set", "features.gcn_epochs=2", "--set", "features.collab_dim=8", "--device", "cpu"]
    code, out, err = run_cli(monkeypatch, capsys, "features", run, *sets)
    assert code == 0, err
    assert out.strip().endswith("features") and load_features(run).collab.shape == (60, 8)
    calls = count_calls(monkeypatch, "train_lightgcn")
    with caplog.at_level("INFO", logger="prismrec"):
        code, out, err = run_cli(monkeypatch, capsys, "features", run, *sets)
    assert code == 0 and calls == [] and "up to date" in caplog.text
    code, out, err = run_cli(monkeypatch, capsys, "features", run, *sets, "--encoder", tmp_path / "nowhere")
    assert code == 2 and "not found locally" in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
