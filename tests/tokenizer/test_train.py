"""The tokenize stage end to end on tiny synthetic runs: artefacts, determinism, TIGER's
suffix, skip/force, input errors, HSA off without tags, and the CLI."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from prismrec.artifacts import build_stage, read_json
from prismrec.cli import app
from prismrec.data.config import DataConfig
from prismrec.data.dataset import write_prepared
from prismrec.data.synthetic import synthetic_tables
from prismrec.errors import MissingStageError, PrismrecError
from prismrec.features.store import ItemFeatures
from prismrec.tokenizer.dedup import sid_keys
from prismrec.tokenizer.store import load_sids
from prismrec.tokenizer.train import tokenize_run
from tok_helpers import clustered_features, make_run, tiny_config

QUALITY_KEYS = {"items", "before_dedup", "after_dedup", "moved_items", "mean_extra_distance"}


def test_prism_writes_unique_three_token_sids_and_the_report(tmp_path):
    run = make_run(tmp_path / "run")
    stage = tokenize_run(run, tiny_config())
    assert stage == run / "tokenizer"
    sids = load_sids(run)
    assert sids.codes.shape == (90, 3) and sids.codebooks.shape == (3, 8, 8)
    assert len(np.unique(sid_keys(sids.codes, 8))) == 90
    q = read_json(stage / "quality.json")
    assert set(q) == QUALITY_KEYS
    for part in ("before_dedup", "after_dedup"):
        assert set(q[part]) == {"collision_rate", "perplexity", "code_usage"}
        assert all(len(v) == 3 for v in q[part].values())
    assert q["after_dedup"]["collision_rate"][-1] == 0.0
    assert q["before_dedup"]["collision_rate"][-1] > 0  # 90 items on 8 codes per layer must collide
    assert q["moved_items"] == round(q["before_dedup"]["collision_rate"][-1] * 90)
    assert (stage / "model.pt").exists() and (stage / "quality.md").exists()


def test_same_seed_same_sids_other_seed_other_codebooks(tmp_path):
    a, b, c = (make_run(tmp_path / name) for name in "abc")
    tokenize_run(a, tiny_config(seed=3))
    tokenize_run(b, tiny_config(seed=3))
    tokenize_run(c, tiny_config(seed=4))
    sa, sb, sc = load_sids(a), load_sids(b), load_sids(c)
    assert np.array_equal(sa.codes, sb.codes) and np.array_equal(sa.codebooks, sb.codebooks)
    assert not np.allclose(sa.codebooks, sc.codebooks)


def test_tiger_mode_appends_a_fourth_token_that_makes_sids_unique(tmp_path):
    run = make_run(tmp_path / "run")
    stage = tokenize_run(run, tiny_config(mode="tiger", use_hsa=True))
    assert stage.name == "tokenizer-tiger"
    sids = load_sids(run, "tokenizer-tiger")
    assert sids.codes.shape == (90, 4)
    assert len({tuple(r) for r in sids.codes}) == 90
    q = read_json(stage / "quality.json")
    assert q["before_dedup"]["collision_rate"][-1] > 0 and q["after_dedup"]["collision_rate"][-1] == 0.0
    assert len(q["after_dedup"]["collision_rate"]) == 4 and q["moved_items"] == 0
    assert read_json(stage / "dedup.json")["hsa"] is False  # TIGER has none of PRISM's modules


@pytest.mark.parametrize("flag,name", [("use_acd", "tokenizer-prism-no-acd"), ("use_hsa", "tokenizer-prism-no-hsa"),
                                       ("use_dhr", "tokenizer-prism-no-dhr")])
def test_ablations_write_their_own_variant(tmp_path, flag, name):
    run = make_run(tmp_path / "run")
    stage = tokenize_run(run, tiny_config(epochs=1, **{flag: False}))
    assert stage.name == name
    info = read_json(stage / "dedup.json")
    assert info[flag.split("_")[1]] is False
    assert sum(info[k] for k in ("acd", "hsa", "dhr")) == 2


def test_collab_direction_writes_its_own_variant(tmp_path):
    run = make_run(tmp_path / "run")
    stage = tokenize_run(run, tiny_config(epochs=1, use_acd=False, collab_direction=True))
    assert stage.name == "tokenizer-prism-no-acd-dir"
    assert read_json(stage / "manifest.json")["config"]["tokenizer"]["collab_direction"] is True
    assert not (run / "tokenizer").exists()


def test_unchanged_stage_is_skipped_and_force_recomputes(tmp_path):
    run = make_run(tmp_path / "run")
    stage = tokenize_run(run, tiny_config(epochs=1))
    created = read_json(stage / "manifest.json")["created"]
    mtime = (stage / "manifest.json").stat().st_mtime_ns
    tokenize_run(run, tiny_config(epochs=1))
    assert (stage / "manifest.json").stat().st_mtime_ns == mtime
    tokenize_run(run, tiny_config(epochs=1, device="auto"))  # the device does not make it stale
    assert (stage / "manifest.json").stat().st_mtime_ns == mtime
    tokenize_run(run, tiny_config(epochs=1), force=True)
    assert (stage / "manifest.json").stat().st_mtime_ns != mtime or read_json(stage / "manifest.json")["created"] != created
    assert read_json(stage / "manifest.json")["inputs"].keys() == {"data", "features"}


def test_missing_features_is_a_clear_error(tmp_path):
    from prismrec.data.synthetic import write_synthetic_run

    run = write_synthetic_run(tmp_path / "run")
    with pytest.raises(MissingStageError, match="prismrec features"):
        tokenize_run(run, tiny_config())


def test_items_without_text_are_a_clear_error(tmp_path):
    items, sequences, tags = synthetic_tables(num_items=40, num_users=80)
    items.loc[7, "text"] = "  "
    run = tmp_path / "run"
    with build_stage(run / "data", config={"data": asdict(DataConfig())}, inputs={}) as stage:
        write_prepared(stage, items, sequences, tags)
    make_run_features(run, 40, items)
    with pytest.raises(PrismrecError, match=r"items.parquet: row 7 .*'text' is empty"):
        tokenize_run(run, tiny_config())


def test_feature_rows_must_match_the_items(tmp_path):
    run = make_run(tmp_path / "run", features=clustered_features(50, np.arange(50) % 3, [6, 12, 3]))
    with pytest.raises(PrismrecError, match=r"content.npy: 50 rows, expected one per item \(90\)"):
        tokenize_run(run, tiny_config())


def make_run_features(run: Path, n: int, items) -> None:
    from prismrec.features.store import write_features

    feats = clustered_features(n, items["tag_1"].to_numpy() - 1, [int(items[f"tag_{l}"].max()) for l in (1, 2, 3)])
    with build_stage(run / "features", config={}, inputs={}) as stage:
        write_features(stage, feats)


def test_no_category_tags_turns_hsa_off_with_a_warning(tmp_path, caplog):
    items, sequences, tags = synthetic_tables(num_items=40, num_users=80, num_levels=0)
    run = tmp_path / "run"
    with build_stage(run / "data", config={"data": asdict(DataConfig(num_levels=0))}, inputs={}) as stage:
        write_prepared(stage, items, sequences, tags)
    rng = np.random.default_rng(0)
    from prismrec.features.store import write_features

    with build_stage(run / "features", config={}, inputs={}) as stage:
        write_features(stage, ItemFeatures(rng.normal(size=(40, 16)).astype(np.float32),
                                           rng.normal(size=(40, 64)).astype(np.float32), []))
    with caplog.at_level(logging.WARNING, logger="prismrec"):
        stage = tokenize_run(run, tiny_config(epochs=2))
    assert "no category tags; HSA is off" in caplog.text
    assert read_json(stage / "dedup.json")["hsa"] is False
    assert load_sids(run).codes.shape == (40, 3)


def test_cli_tokenize_and_sid_report(tmp_path):
    run = make_run(tmp_path / "run")
    sets = ["tokenizer.codebook_size=8", "tokenizer.latent_dim=8", "tokenizer.hidden_dims=[32,16]",
            "tokenizer.epochs=2", "tokenizer.batch_size=32", "tokenizer.device=cpu", "tokenizer.dedup_neighbourhood=16"]
    args = [a for s in sets for a in ("--set", s)]
    runner = CliRunner()
    for extra in ([], ["--mode", "tiger"], ["--no-dhr", "--seed", "5"]):
        result = runner.invoke(app, ["tokenize", str(run), *args, *extra])
        assert result.exit_code == 0, result.output
    assert {p.name for p in run.glob("tokenizer*")} == {"tokenizer", "tokenizer-tiger", "tokenizer-prism-no-dhr"}
    assert read_json(run / "tokenizer-prism-no-dhr" / "manifest.json")["config"]["tokenizer"]["seed"] == 5
    report = runner.invoke(app, ["sid-report", str(run)])
    assert report.exit_code == 0
    for name in ("| tokenizer |", "| tokenizer-tiger |", "| tokenizer-prism-no-dhr |", "PRISM (paper) | 12101 | 1.79% | 17.57% | 248.5",
                 "TIGER (paper) | 12101 | 31.57% | 95.73% | 84.2"):
        assert name in report.output


def test_sid_report_without_tokenizer_stage_is_an_error(tmp_path):
    result = CliRunner().invoke(app, ["sid-report", str(tmp_path)])
    assert result.exit_code != 0
    assert isinstance(result.exception, PrismrecError)
