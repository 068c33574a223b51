"""The train / evaluate / recommend commands and the inference API."""

import json

import pytest
from cli_helpers import run_cli

from prismrec.data.synthetic import write_synthetic_run
from prismrec.errors import PrismrecError
from prismrec.recommender.config import RecommenderConfig
from prismrec.recommender.inference import Recommender


prismrec = run_cli  # `prismrec ARGS` as a user runs it: (exit code, stdout, stderr)

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
    assert code == 2 and "--model 'gru4rec': expected prism, tiger, sasrec, pop or the name of a model" in err
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


def test_a_trained_model_is_named_by_its_directory(tmp_path, monkeypatch, capsys):
    """`--model <model directory name>` trains, evaluates, recommends and serves exactly that model,
    without repeating its switches and seed; a name that clashes with a flag or `--set` is refused."""
    import uvicorn

    run = write_synthetic_run(tmp_path / "run", num_users=50)
    code, out, _ = prismrec(monkeypatch, capsys, "train", run, "--model", "sasrec-seed1", "--device", "cpu", *TINY)
    assert code == 0 and (run / "models" / "sasrec-seed1" / "best.pt").exists()
    assert not (run / "models" / "sasrec").exists()
    code, out, _ = prismrec(monkeypatch, capsys, "evaluate", run, "--model", "sasrec-seed1", "--device", "cpu", *TINY)
    assert code == 0 and (run / "eval" / "sasrec-seed1" / "metrics.json").exists()
    code, out, _ = prismrec(monkeypatch, capsys, "recommend", run, "--model", "sasrec-seed1", "--history", "I00001",
                            "-k", "2", *TINY)
    assert code == 0 and len(out.strip().splitlines()) == 2
    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(app))
    code, _, err = prismrec(monkeypatch, capsys, "serve", run, "--model", "sasrec-seed1", "--device", "cpu", *TINY)
    assert code == 0 and len(served) == 1, err
    for clash, needle in ((["--seed", "2"], "drop --seed"), (["--no-dsi"], "drop --no-dsi"),
                          (["--set", "recommender.seed=3"], "drop recommender.seed=3")):
        code, _, err = prismrec(monkeypatch, capsys, "evaluate", run, "--model", "sasrec-seed1", *clash)
        assert code == 2 and needle in err and err.count("\n") == 1
    code, _, err = prismrec(monkeypatch, capsys, "evaluate", run, "--model", "sasrec-seed7")
    assert code == 2 and "prismrec train" in err and "--model sasrec-seed7" in err   # the command to run
    code, _, err = prismrec(monkeypatch, capsys, "serve", run, "--model", "sasrec-item-ids")
    assert code == 2 and "model directory" in err and err.count("\n") == 1


def test_recommend_prints_one_line_per_item_with_long_titles_shortened(tmp_path, monkeypatch, capsys):
    from prismrec.recommender.commands import TITLE_WIDTH

    run = write_synthetic_run(tmp_path / "run", num_users=30)
    prismrec(monkeypatch, capsys, "train", run, "--model", "pop")
    long_title = "Serum " * 100 + "\nsecond line"
    monkeypatch.setattr(Recommender, "recommend", lambda self, history, k, times=None: [
        {"item_id": "X1", "title": long_title, "score": -1.0}, {"item_id": "X2", "title": "Short", "score": -2.0}])
    code, out, _ = prismrec(monkeypatch, capsys, "recommend", run, "--model", "pop", "--history", "I00001", "-k", "2")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 2 and lines[1].endswith("  Short")
    title = lines[0].split("  ", 3)[-1]
    assert title.startswith("Serum Serum") and title.endswith("...") and len(title) <= TITLE_WIDTH
