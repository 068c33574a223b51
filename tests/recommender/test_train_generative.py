"""The trainer and evaluator drive the generative model (PRISM / TIGER) end to end on a tiny run."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import prismrec.device as device_module
from prismrec.artifacts import build_stage
from prismrec.config import PipelineConfig
from prismrec.data.dataset import load_prepared
from prismrec.data.synthetic import write_synthetic_run
from prismrec.evaluation.evaluator import evaluate_run
from prismrec.features.store import ItemFeatures, write_features
from prismrec.recommender.trainer import load_trained, train_run
from prismrec.tokenizer.store import SemanticIds, write_sids


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = write_synthetic_run(tmp_path_factory.mktemp("gen") / "run", num_users=80)
    data = load_prepared(run)
    n, rng = data.num_items, np.random.default_rng(0)
    with build_stage(run / "features", config={}, inputs={}) as stage:
        write_features(stage, ItemFeatures(content=rng.normal(size=(n, 24)), collab=rng.normal(size=(n, 64)),
                                           tag_embeddings=[rng.normal(size=(len(t), 24)) for t in data.tags]))
    flat = rng.choice(8 ** 3, size=n, replace=False)
    codes = np.stack(np.unravel_index(flat, (8, 8, 8)), axis=1)
    for variant, sid_codes in (("tokenizer", codes),
                               ("tokenizer-tiger", np.concatenate([codes, np.zeros((n, 1), int)], axis=1))):
        with build_stage(run / variant, config={}, inputs={}) as stage:
            write_sids(stage, SemanticIds(codes=sid_codes, codebooks=rng.normal(size=(3, 8, 16)).astype(np.float32),
                                          item_ids=data.items["item_id"].to_numpy()))
    return run


def tiny(model: str, **kw) -> PipelineConfig:
    cfg = PipelineConfig()
    cfg.recommender = dataclasses.replace(cfg.recommender, model=model, d_model=32, num_heads=2, encoder_layers=1,
                                          decoder_layers=1, d_ff=64, d_moe=32, d_content_proj=16, d_collab_proj=8,
                                          beam_size=20, epochs=2, batch_size=64, device="cpu", **kw)
    return cfg


@pytest.mark.parametrize("model", ["prism", "tiger"])
def test_generative_models_train_and_evaluate(run, model):
    cfg = tiny(model)
    out = train_run(run, cfg)
    log = json.loads((out / "train_log.json").read_text())
    assert out.name == model and [e["epoch"] for e in log["epochs"]] == [1, 2]
    assert log["epochs"][1]["loss"] < log["epochs"][0]["loss"]
    results = evaluate_run(run, cfg)
    assert (run / "eval" / model / "metrics.json").exists()
    assert 0.0 <= results["test"]["ndcg@10"] <= results["test"]["recall@10"] <= results["test"]["recall@20"] <= 1.0


def test_tiger_and_ablations_use_fewer_modules(run):
    sizes = {}
    for name, cfg in (("prism", tiny("prism")), ("tiger", tiny("tiger")), ("no-dsi", tiny("prism", use_dsi=False))):
        if name == "no-dsi":
            train_run(run, cfg)
        sizes[name] = load_trained(run, cfg.recommender)[0].num_parameters()["total"]
    assert sizes["tiger"] < sizes["prism"] and sizes["no-dsi"] < sizes["prism"]


def test_cpu_bf16_training_learns_and_does_not_invalidate_a_trained_model(run, tmp_path, monkeypatch):
    trained = train_run(run, tiny("prism"))
    stamp = (trained / "best.pt").stat().st_mtime_ns
    # how a model is computed (like the device) is not what it is: no retraining
    assert train_run(run, tiny("prism", amp_cpu=True)) == trained
    assert (trained / "best.pt").stat().st_mtime_ns == stamp

    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: True)  # bf16 autocast on any CPU
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("models", "eval"))
    out = train_run(copy, tiny("prism", amp_cpu=True))
    log = json.loads((out / "train_log.json").read_text())
    assert log["epochs"][1]["loss"] < log["epochs"][0]["loss"]
    assert 0.0 <= evaluate_run(copy, tiny("prism", amp_cpu=True))["test"]["recall@10"] <= 1.0


def test_prism_trains_under_torchrun_with_two_processes(run, tmp_path):
    """The launch users run on several GPUs, here on gloo: DSI's experts, SSA and ATS under DDP."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("models", "eval"))
    fields = {f.name: getattr(tiny("prism").recommender, f.name) for f in dataclasses.fields(tiny("prism").recommender)}
    sets = [arg for key in ("d_model", "num_heads", "encoder_layers", "decoder_layers", "d_ff", "d_moe",
                            "d_content_proj", "d_collab_proj", "beam_size", "epochs", "batch_size")
            for arg in ("--set", f"recommender.{key}={fields[key]}")]
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "prismrec", "train", str(copy), "--model", "prism", "--device", "cpu", *sets],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    out = copy / "models" / "prism"
    log = json.loads((out / "train_log.json").read_text())
    assert [e["epoch"] for e in log["epochs"]] == [1, 2] and log["epochs"][1]["loss"] < log["epochs"][0]["loss"]
    assert "valid" in log["epochs"][1] and (out / "manifest.json").exists()
    assert done.stdout.count("prism: max_epochs") == 1  # the command's summary line, from rank 0 only
    assert 0.0 <= evaluate_run(copy, tiny("prism"))["test"]["recall@10"] <= 1.0  # the checkpoint is the model's


def test_item_head_model_trains_and_its_weight_is_part_of_the_evaluation(run):
    cfg = tiny("prism", item_head=True, item_id_input=True)
    out = train_run(run, cfg)
    log = json.loads((out / "train_log.json").read_text())
    assert out.name == "prism-item-ids-item-head"
    assert "item" in log["epochs"][0]["loss_parts"] and log["epochs"][1]["loss"] < log["epochs"][0]["loss"]
    first = evaluate_run(run, cfg)
    metrics = run / "eval" / out.name / "metrics.json"
    written = metrics.stat().st_mtime_ns
    assert evaluate_run(run, cfg) == first and metrics.stat().st_mtime_ns == written   # unchanged: reused
    # the item head's weight is picked on validation (every validation of training, and evaluation):
    # the best checkpoint keeps its pick, which evaluation finds again and serving ranks with
    choices = cfg.recommender.item_score_weights
    picks = [e["valid"]["item_score_weight"] for e in log["epochs"] if "valid" in e]
    assert picks and set(picks) <= set(choices)
    model, _, checkpoint = load_trained(run, cfg.recommender)
    assert checkpoint["item_score_weight"] in choices and model.cfg.item_score_weight == checkpoint["item_score_weight"]
    assert first["item_score_weight"] == checkpoint["item_score_weight"]
    assert f"item-head weight {first['item_score_weight']:g})" in (metrics.parent / "metrics.md").read_text()
    assert first["valid"]["ndcg@10"] == pytest.approx(checkpoint["valid"]["ndcg@10"])
    # a fixed weight ([] = no pick) only changes ranking: same checkpoint (no retraining), new evaluation
    reweighted = dataclasses.replace(cfg.recommender, item_score_weights=[], item_score_weight=0.0)
    assert train_run(run, dataclasses.replace(cfg, recommender=reweighted)) == out
    assert json.loads((out / "train_log.json").read_text()) == log
    assert load_trained(run, reweighted)[0].cfg.item_score_weight == 0.0
    assert evaluate_run(run, reweighted)["item_score_weight"] == 0.0
    assert metrics.stat().st_mtime_ns != written
