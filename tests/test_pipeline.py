"""End to end: `prismrec run` on a tiny RecBole-format dataset, every stage, then a skip on re-run."""

import json
import subprocess
import sys

import numpy as np

GENRES = ["Action", "Comedy", "Drama", "Horror"]

TINY = [
    "features.gcn_epochs=2", "features.gcn_eval_every=1",
    "tokenizer.codebook_size=8", "tokenizer.epochs=3", "tokenizer.kmeans_samples=64",
    "tokenizer.hidden_dims=[32]", "tokenizer.dedup_neighbourhood=8",
    "recommender.epochs=1", "recommender.d_model=32", "recommender.d_ff=64", "recommender.num_heads=2",
    "recommender.encoder_layers=1", "recommender.decoder_layers=1", "recommender.d_moe=32",
    "recommender.beam_size=20", "recommender.batch_size=64",
]


def write_recbole(root, num_users=60, num_items=30, seed=0):
    rng = np.random.default_rng(seed)
    root.mkdir()
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u in range(num_users):
        start = rng.integers(num_items)
        for j in range(int(rng.integers(6, 10))):
            lines.append(f"u{u}\t{(start + j) % num_items}\t4\t{880000000 + 1000 * j + u}")
    (root / f"{root.name}.inter").write_text("\n".join(lines) + "\n")
    items = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    items += [f"{i}\tMovie number {i}\t{1990 + i % 10}\t{GENRES[i % 4]} {GENRES[(i + 1) % 4]}" for i in range(num_items)]
    (root / f"{root.name}.item").write_text("\n".join(items) + "\n")
    return root


def run(args):
    return subprocess.run([sys.executable, "-m", "prismrec.cli", *args], capture_output=True, text=True, timeout=600)


def test_run_executes_every_stage_and_prints_metrics(tmp_path):
    dataset = write_recbole(tmp_path / "tiny")
    out = tmp_path / "run"
    sets = [x for s in TINY for x in ("--set", s)]
    result = run(["run", "--dataset", str(dataset), "--out", str(out), "--device", "cpu", *sets])
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "eval" / "report.md").exists() and (out / "eval" / "training_curves.png").exists()
    for stage in ("data", "features", "tokenizer", "models/prism", "models/pop", "eval/prism", "eval/pop"):
        assert (out / stage / "manifest.json").exists() or (out / stage / "metrics.json").exists(), stage
    metrics = json.loads((out / "eval" / "prism" / "metrics.json").read_text())
    assert metrics["users"] == 60
    assert set(metrics["test"]) == {f"{m}@{k}" for m in ("recall", "ndcg") for k in (5, 10, 20)}
    assert all(0.0 <= v <= 1.0 for v in metrics["test"].values())
    assert "prism" in result.stdout and "pop" in result.stdout

    # unchanged inputs and config: every stage is skipped, the data stage is not rewritten
    before = (out / "data" / "manifest.json").stat().st_mtime_ns
    again = run(["run", "--dataset", str(dataset), "--out", str(out)])
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "data" / "manifest.json").stat().st_mtime_ns == before


def test_run_rejects_unknown_dataset(tmp_path):
    result = run(["run", "--dataset", "no-such-dataset", "--out", str(tmp_path / "r")])
    assert result.returncode == 2
    assert "no-such-dataset" in result.stderr
    assert not (tmp_path / "r" / "data").exists()
