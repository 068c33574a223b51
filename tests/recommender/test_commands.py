"""The train / evaluate / recommend commands and the inference API."""

import json
import sys

import pytest

from prismrec import cli
from prismrec.data.synthetic import write_synthetic_run
from prismrec.errors import PrismrecError
from prismrec.recommender.config import RecommenderConfig
from prismrec.recommender.inference import Recommender


def prismrec(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["prismrec", *map(str, args)])
    code = 0
    try:
        cli.main()
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


TINY = ["--set", "recommender.sasrec_dim=8", "--set", "recommender.epochs=1", "--set", "recommender.batch_size=64"]


def test_train_evaluate_recommend(tmp_path, monkeypatch, capsys):
    run = write_synthetic_run(tmp_path / "run", num_users=60)
    code, out, _ = prismrec(monkeypatch, capsys, "train", run, "--model", "sasrec", "--device", "cpu", *TINY)
    assert code == 0 and "sasrec" in out
    code, out, _ = prismrec(monkeypatch, capsys, "evaluate", run, "--model", "sasrec", "--device", "cpu", *TINY)
    assert code == 0 and "| test | 60 |" in out
    assert set(json.loads((run / "eval" / "sasrec" / "metrics.json").read_text())["test"]) >= {"recall@10", "ndcg@10"}
    code, out, _ = prismrec(monkeypatch, capsys, "recommend", run, "--history", "I00001", "I00007", "-k", "3",
                            "--model", "sasrec", *TINY)
    assert code == 0 and len(out.strip().splitlines()) == 3 and "Item " in out


def test_missing_stage_and_unknown_items_exit_2(tmp_path, monkeypatch, capsys):
    code, _, err = prismrec(monkeypatch, capsys, "train", tmp_path / "nothing", "--model", "sasrec")
    assert code == 2 and "prismrec prepare" in err
    run = write_synthetic_run(tmp_path / "run", num_users=30)
    code, _, err = prismrec(monkeypatch, capsys, "evaluate", run, "--model", "sasrec")
    assert code == 2 and "prismrec train" in err
    code, _, err = prismrec(monkeypatch, capsys, "train", run, "--model", "gru4rec")
    assert code == 2 and "recommender.model" in err
    prismrec(monkeypatch, capsys, "train", run, "--model", "pop")
    code, _, err = prismrec(monkeypatch, capsys, "recommend", run, "--model", "pop", "--history", "I00001", "NOPE", "X2")
    assert code == 2 and "NOPE" in err and "X2" in err and err.count("\n") == 1
    code, _, err = prismrec(monkeypatch, capsys, "recommend", run, "--model", "pop", "--history", "-k", "5")
    assert code == 2 and "--history needs item ids before -k" in err
    code, out, _ = prismrec(monkeypatch, capsys, "recommend", run, "--model", "pop", "--history", "I00001", "I00002",
                            "--timestamps", "100,200", "-k", "2")
    assert code == 0 and len(out.strip().splitlines()) == 2
    for bad, message in (("100,x", "comma-separated integers"), ("200,100", "non-decreasing"),
                         ("100", "expected 2 values")):
        code, _, err = prismrec(monkeypatch, capsys, "recommend", run, "--model", "pop", "--history", "I00001",
                                "I00002", "--timestamps", bad)
        assert code == 2 and message in err and err.count("\n") == 1


def test_inference_api(tmp_path, monkeypatch, capsys):
    run = write_synthetic_run(tmp_path / "run", num_users=40)
    prismrec(monkeypatch, capsys, "train", run, "--model", "pop")
    rec = Recommender.load(run, RecommenderConfig(model="pop", device="cpu"))
    rows = rec.recommend(["I00001", "I00002"], k=5)
    assert len(rows) == 5 and set(rows[0]) == {"item_id", "title", "score"}
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    assert rows[0]["title"].startswith("Item ")
    with pytest.raises(PrismrecError, match="unknown item id"):
        rec.recommend(["missing"], k=5)


def test_inference_batch_matches_the_dataset_layout(tmp_path, monkeypatch, capsys):
    from prismrec.data.dataset import load_prepared

    run = write_synthetic_run(tmp_path / "run", num_users=40)
    prismrec(monkeypatch, capsys, "train", run, "--model", "pop")
    rec = Recommender.load(run, RecommenderConfig(model="pop", device="cpu"))
    data = load_prepared(run)
    test = data.examples("test")
    seq = data.sequences.iloc[0]
    history = [data.items["item_id"][i] for i in seq["items"][:-1]]
    batch = rec.make_batch([history], timestamps=[list(seq["timestamps"][:-1])])
    n = int(test.length[0])
    assert batch.history[0].tolist() == test.history[0, -n:].tolist()
    assert batch.time_bucket[0].tolist() == test.time_bucket[0, -n:].tolist()
