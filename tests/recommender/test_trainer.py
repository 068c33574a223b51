"""The generic trainer on a tiny SASRec over a synthetic run (a few seconds each)."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from prismrec.baselines.sasrec import SASRec
from prismrec.config import PipelineConfig
from prismrec.data.dataset import load_prepared
from prismrec.data.synthetic import write_synthetic_run
from prismrec.evaluation.evaluator import evaluate_examples
from prismrec.errors import MissingStageError
from prismrec.recommender.trainer import load_trained, train_run, training_batches


def tiny_config(**recommender) -> PipelineConfig:
    cfg = PipelineConfig()
    base = dict(model="sasrec", sasrec_dim=16, sasrec_dropout=0.1, sasrec_lr=3e-3, batch_size=64, epochs=2,
                eval_batch_size=256, device="cpu")
    cfg.recommender = dataclasses.replace(cfg.recommender, **{**base, **recommender})
    return cfg


def read_log(out):
    return json.loads((out / "train_log.json").read_text())


@pytest.fixture()
def run(tmp_path):
    return write_synthetic_run(tmp_path / "run", num_users=100)


def test_batches_are_length_bucketed_and_cover_every_example_once():
    lengths = np.random.default_rng(0).integers(1, 21, size=1000)
    batches = training_batches(lengths, 64, np.random.default_rng(1))
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    spreads = [np.ptp(lengths[b]) for b in batches]
    assert max(spreads) <= 2  # sorted by length: 64 examples span at most 3 of the ~50-example lengths
    again = training_batches(lengths, 64, np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))  # depends only on the seed


def test_training_never_sees_validation_or_test_targets(run, monkeypatch):
    seen = []
    original = SASRec.calculate_loss

    def recording(self, batch):
        seen.append((batch.history.clone(), batch.target.clone()))
        return original(self, batch)

    monkeypatch.setattr(SASRec, "calculate_loss", recording)
    train_run(run, tiny_config(epochs=1))
    data = load_prepared(run)
    # every (history, target) the model trained on is a window of the user's training part
    allowed = set()
    for seq in data.sequences["items"]:
        train_part = list(seq[:-2])
        for t in range(1, len(train_part)):
            allowed.add((tuple(train_part[max(0, t - 20):t]), train_part[t]))
    pairs = [(tuple(h[h >= 0].tolist()), int(t)) for hist, tgt in seen for h, t in zip(hist, tgt)]
    assert len(pairs) == len(data.examples("train"))
    assert set(pairs) <= allowed and len(set(pairs)) == len(allowed)


def test_two_epochs_lower_the_training_loss(run):
    out = train_run(run, tiny_config(epochs=2))
    epochs = read_log(out)["epochs"]
    assert len(epochs) == 2 and epochs[1]["loss"] < epochs[0]["loss"]
    assert (out / "best.pt").exists() and (out / "last.pt").exists() and (out / "manifest.json").exists()


def test_best_checkpoint_is_the_best_validation_epoch(run):
    cfg = tiny_config(epochs=3, sasrec_lr=1e-2)
    out = train_run(run, cfg)
    log = read_log(out)
    valid = [e["valid"]["ndcg@10"] for e in log["epochs"]]
    best_epoch = int(np.argmax(valid)) + 1
    assert log["best_epoch"] == best_epoch
    model, ctx, checkpoint = load_trained(run, cfg.recommender)
    assert checkpoint["epoch"] == best_epoch
    again = evaluate_examples(model, ctx.data.examples("valid"))["ndcg@10"]
    assert again == pytest.approx(max(valid), abs=1e-6)


def test_unchanged_model_is_not_retrained_and_force_retrains(run):
    out = train_run(run, tiny_config(epochs=1))
    stamp = (out / "best.pt").stat().st_mtime_ns
    train_run(run, tiny_config(epochs=1))
    assert (out / "best.pt").stat().st_mtime_ns == stamp
    train_run(run, tiny_config(epochs=1), force=True)
    assert (out / "best.pt").stat().st_mtime_ns != stamp


def test_interrupted_run_resumes_from_the_saved_epoch(tmp_path, monkeypatch):
    cfg = tiny_config(epochs=2)
    reference = train_run(write_synthetic_run(tmp_path / "a", num_users=100), cfg)

    run = write_synthetic_run(tmp_path / "b", num_users=100)
    original = SASRec.calculate_loss
    calls = {"n": 0}
    steps_per_epoch = read_log(reference)["batches_per_epoch"]

    def crash_in_epoch_two(self, batch):
        calls["n"] += 1
        if calls["n"] == steps_per_epoch + 2:
            raise KeyboardInterrupt  # killed mid-way through epoch 2
        return original(self, batch)

    monkeypatch.setattr(SASRec, "calculate_loss", crash_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train_run(run, cfg)
    out = run / "models" / "sasrec"
    assert not (out / "manifest.json").exists()
    assert [e["epoch"] for e in read_log(out)["epochs"]] == [1]
    monkeypatch.setattr(SASRec, "calculate_loss", original)
    calls["n"] = 0

    def counting(self, batch):
        calls["n"] += 1
        return original(self, batch)

    monkeypatch.setattr(SASRec, "calculate_loss", counting)
    train_run(run, cfg)
    assert calls["n"] == steps_per_epoch  # epoch 2 only
    resumed, uninterrupted = read_log(out), read_log(reference)
    assert [e["epoch"] for e in resumed["epochs"]] == [1, 2]
    # the resumed run is the same computation as one that never stopped
    assert [e["loss"] for e in resumed["epochs"]] == pytest.approx([e["loss"] for e in uninterrupted["epochs"]])
    a = torch.load(out / "best.pt", weights_only=False)["model"]
    b = torch.load(reference / "best.pt", weights_only=False)["model"]
    assert all(torch.allclose(a[k], b[k]) for k in a)


def test_time_budget_stops_cleanly_keeps_best_and_resumes(run):
    out = train_run(run, tiny_config(epochs=2, max_minutes=1e-5))
    log = read_log(out)
    assert log["stop_reason"] == "time_budget"
    assert len(log["epochs"]) == 1 and log["epochs"][0]["partial"] and log["epochs"][0]["batches"] == 1
    assert (out / "best.pt").exists() and "valid" in log["epochs"][0]
    # a new call without the budget carries on from batch 2 of epoch 1 and finishes
    out = train_run(run, tiny_config(epochs=2))
    log = read_log(out)
    assert log["stop_reason"] == "max_epochs"
    assert [e["epoch"] for e in log["epochs"]] == [1, 1, 2]
    assert log["epochs"][1]["batches"] == log["batches_per_epoch"]


def test_early_stopping_uses_patience(run):
    out = train_run(run, tiny_config(epochs=30, patience=1, sasrec_lr=0.0))  # lr 0: nothing improves
    log = read_log(out)
    assert log["stop_reason"] == "early_stop" and len(log["epochs"]) == 2 and log["best_epoch"] == 1


def test_most_popular_trains_in_zero_epochs(run):
    out = train_run(run, tiny_config(model="pop"))
    log = read_log(out)
    assert log["epochs"] == [] and (out / "best.pt").exists()


def test_warmup_is_a_fixed_step_count_then_cosine():
    from prismrec.recommender.trainer import lr_schedule

    f = lr_schedule("warmup-cosine", total_steps=100_000, warmup_steps=500)
    assert f(0) == pytest.approx(1 / 500) and f(499) == pytest.approx(1.0)
    assert f(500) == pytest.approx(1.0) and f(100_000) == pytest.approx(0.0)
    assert 0.0 < f(50_000) < 1.0
    short = lr_schedule("warmup-cosine", total_steps=100, warmup_steps=500)
    assert short(49) == pytest.approx(1.0)  # warmup never exceeds half of a short run


def test_time_schedule_decays_with_the_time_used_not_the_steps():
    from prismrec.recommender.trainer import lr_schedule

    used = {"share": 0.0}
    f = lr_schedule("warmup-cosine", total_steps=100_000, warmup_steps=10, time_progress=lambda: used["share"])
    assert f(5) == pytest.approx(6 / 10)                 # warmup still counts steps
    assert f(50) == pytest.approx(1.0)                   # no time used yet: full learning rate
    used["share"] = 0.5
    assert f(50) == pytest.approx(0.5)                   # half the time: cosine midpoint, whatever the step
    used["share"] = 3.0
    assert f(50) == pytest.approx(0.0)                   # past the end it stays at 0


def test_time_schedule_ends_at_the_step_count_when_that_comes_first():
    from prismrec.recommender.trainer import lr_schedule

    used = {"share": 0.1}                                # a fast machine: little of the time used
    f = lr_schedule("warmup-cosine", total_steps=1010, warmup_steps=10, time_progress=lambda: used["share"])
    assert f(110) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.1)))   # time ahead of steps (10%)
    assert f(510) == pytest.approx(0.5)                  # steps ahead of time: cosine midpoint
    assert f(1010) == pytest.approx(0.0) and f(5000) == pytest.approx(0.0)


def test_time_schedule_ends_training_with_a_validated_best_checkpoint(run):
    out = train_run(run, tiny_config(epochs=50, sasrec_schedule="warmup-cosine", schedule_minutes=1e-4, warmup_steps=1))
    log = read_log(out)
    assert log["stop_reason"] == "schedule_end"
    assert len(log["epochs"]) == 1 and log["epochs"][0]["partial"] and "valid" in log["epochs"][0]
    assert log["epochs"][0]["trained_seconds"] >= 60 * 1e-4
    assert (out / "best.pt").exists() and json.loads((out / "manifest.json").read_text())["stop_reason"] == "schedule_end"


def test_a_longer_schedule_continues_a_schedule_ended_run(run):
    short = tiny_config(epochs=50, sasrec_schedule="warmup-cosine", schedule_minutes=1e-4, warmup_steps=1)
    out = train_run(run, short)
    first = read_log(out)["epochs"]
    assert train_run(run, short) == out and read_log(out)["epochs"] == first  # same schedule: nothing left to do

    longer = dataclasses.replace(short.recommender, schedule_minutes=1e-2)
    train_run(run, longer)
    log = read_log(out)
    assert log["epochs"][:len(first)] == first                 # carried on, not restarted
    added = log["epochs"][len(first):]
    # ran on to the longer schedule's end (the last epoch may end just before it: the stop
    # check after the epoch's bookkeeping is what crosses it)
    assert added and added[-1]["trained_seconds"] > 0.8 * 60 * 1e-2 > first[-1]["trained_seconds"]
    assert added[0]["lr"] > 0                                    # a warm restart, not a decayed-to-0 rate
    assert log["stop_reason"] == "schedule_end"
    assert train_run(run, dataclasses.replace(longer, schedule_minutes=1e-4)) == out  # shorter: reused as is
    assert read_log(out)["epochs"] == log["epochs"]


def test_weight_decay_shrinks_the_weights(tmp_path):
    norms = []
    for decay in (0.0, 5.0):
        cfg = tiny_config(epochs=2, weight_decay=decay)
        run = write_synthetic_run(tmp_path / f"run-{decay}", num_users=100)
        train_run(run, cfg)
        model, _, _ = load_trained(run, cfg.recommender)
        norms.append(sum(float(p.detach().norm()) for p in model.parameters()))
    assert norms[1] < 0.9 * norms[0]


def test_evaluating_an_interrupted_training_says_so_and_how_to_resume(run):
    from prismrec.recommender.trainer import require_trained

    cfg = tiny_config(epochs=1)
    with pytest.raises(MissingStageError, match="not found"):
        require_trained(run, cfg.recommender)
    out = train_run(run, cfg)
    assert require_trained(run, cfg.recommender) == out
    (out / "manifest.json").unlink()                     # as a process killed mid-training leaves it
    with pytest.raises(MissingStageError, match="interrupted; resume it with `prismrec train"):
        require_trained(run, cfg.recommender)
