"""`prismrec info`'s view of a run: stages, and models trained, unfinished, evaluated or stale."""

import json

from cli_helpers import run_cli

from prismrec.data.synthetic import write_synthetic_run
from prismrec.evaluation.evaluator import evaluate_run
from prismrec.recommender.config import RecommenderConfig
from prismrec.recommender.trainer import train_run
from prismrec.run_contents import model_rows, stage_rows

LONG = "prism-item-ids-item-head-item-scale32-item-drop0.25-sids-tiger-seed1"


def by_name(rows):
    return {row["model"]: row for row in rows}


def test_models_and_stages_of_a_run(tmp_path, monkeypatch, capsys):
    run = write_synthetic_run(tmp_path / "run", num_users=40)
    assert model_rows(run) == []
    pop = RecommenderConfig(model="pop", device="cpu")
    train_run(run, pop)
    train_run(run, RecommenderConfig(model="sasrec", sasrec_dim=8, epochs=1, batch_size=64, device="cpu"))
    metrics = evaluate_run(run, pop)
    (run / "models" / LONG).mkdir()                         # killed in its first epoch: last.pt only
    (run / "models" / LONG / "last.pt").write_bytes(b"x")
    (run / "models" / "empty").mkdir()

    rows = by_name(model_rows(run))
    assert {name: row["status"] for name, row in rows.items()} == {
        "pop": "trained", "sasrec": "trained", LONG: "unfinished", "empty": "empty"}
    assert rows["pop"]["evaluation"] == "current" and rows["sasrec"]["evaluation"] is None
    assert rows["pop"]["test_ndcg@10"] == metrics["test"]["ndcg@10"] and rows["sasrec"]["test_ndcg@10"] is None
    assert rows["sasrec"]["epochs"] == 1 and rows["sasrec"]["best_epoch"] == 1 and rows["sasrec"]["valid_ndcg@10"] > 0
    assert not any(row["stale"] for row in rows.values())
    assert [(s["stage"], s["stale"]) for s in stage_rows(run)] == [("data", False)]

    # the model's checkpoint changed after its evaluation: the test figures no longer describe it
    with open(run / "models" / "pop" / "best.pt", "ab") as f:
        f.write(b"\0")
    rows = by_name(model_rows(run))
    assert rows["pop"]["evaluation"] == "stale" and rows["pop"]["test_ndcg@10"] is None
    # new data under the trained models: both are stale (the next `train` retrains them)
    write_synthetic_run(run, seed=1, num_users=40)
    assert all(by_name(model_rows(run))[m]["stale"] for m in ("pop", "sasrec"))

    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run_cli(monkeypatch, capsys, "info", run)
    assert code == 0 and LONG in out and "unfinished" in out and "evaluation stale" in out  # names never cut
    code, out, _ = run_cli(monkeypatch, capsys, "info", run, "--json")
    info = json.loads(out)
    assert code == 0 and info["users"] == 40 and {m["model"] for m in info["models"]} == {"pop", "sasrec", LONG, "empty"}
    assert info["stages"][0]["stage"] == "data"
