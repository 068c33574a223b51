"""`prismrec report`: seeds grouped into mean ± std, training curves drawn."""

import json

import numpy as np
import pytest

from prismrec.errors import PrismrecError
from prismrec.evaluation.report import (ablation_report, collect, epoch_position, markdown_report,
                                        popularity_report, write_report)

KEYS = ["recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20"]


def fake_run(tmp_path, values):
    for name, v in values.items():
        metrics = {"test": {k: v for k in KEYS}, "valid": {k: v / 2 for k in KEYS}}
        (tmp_path / "eval" / name).mkdir(parents=True)
        (tmp_path / "eval" / name / "metrics.json").write_text(json.dumps(metrics))
        (tmp_path / "models" / name).mkdir(parents=True)
        log = {"epochs": [{"epoch": e, "valid": {"ndcg@10": v * e}} for e in (1, 2, 3)]}
        (tmp_path / "models" / name / "train_log.json").write_text(json.dumps(log))
    return tmp_path


def test_seeds_are_grouped_with_mean_and_std(tmp_path):
    run = fake_run(tmp_path, {"prism": 0.1, "prism-seed1": 0.2, "prism-seed2": 0.3, "pop": 0.05})
    groups = collect(run)
    assert sorted(groups) == ["pop", "prism"] and len(groups["prism"]) == 3
    table = markdown_report(groups)
    prism_row = next(line for line in table.splitlines() if line.startswith("| prism |"))
    assert f"{0.2:.4f} ± {np.std([0.1, 0.2, 0.3], ddof=1):.4f}" in prism_row
    assert "| pop | 1 | 0.0500 |" in table


def test_ablations_are_set_against_the_mean_of_their_full_model(tmp_path):
    run = fake_run(tmp_path, {"prism": 0.1, "prism-seed1": 0.3, "prism-no-dsi": 0.18, "prism-no-dsi-no-ssa": 0.25,
                              "tiger": 0.05, "tiger2-no-x": 0.1, "prism-sids-prism-no-acd-dir": 0.22})
    table = ablation_report(collect(run))
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines()[2:]}
    assert sorted(rows) == ["prism-no-dsi vs prism", "prism-no-dsi-no-ssa vs prism",  # tiger2 has no full model
                            "prism-sids-prism-no-acd-dir vs prism"]
    assert "0.2200 (+10.0%)" in rows["prism-sids-prism-no-acd-dir vs prism"]
    assert "| 1 | 0.1800 (-10.0%) |" in rows["prism-no-dsi vs prism"]        # 0.18 vs the seeds' mean 0.2
    assert "0.2500 (+25.0%)" in rows["prism-no-dsi-no-ssa vs prism"]
    assert ablation_report(collect(fake_run(tmp_path / "other", {"prism": 0.1}))) == ""
    assert "## Ablations" in write_report(run)[0]


def test_report_writes_markdown_and_png(tmp_path):
    run = fake_run(tmp_path, {"prism": 0.1, "tiger": 0.05})
    text, plot = write_report(run)
    assert (run / "eval" / "report.md").read_text() == text
    assert plot is not None and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_evaluated_model_is_a_clear_error(tmp_path):
    with pytest.raises(PrismrecError, match="no evaluated model"):
        collect(tmp_path)


def test_a_validation_before_a_budget_stop_sits_at_its_fraction_of_the_epoch():
    assert epoch_position({"epoch": 11, "batches": 26, "partial": True}, 520) == 10.05
    assert epoch_position({"epoch": 11, "batches": 520, "partial": False}, 520) == 11
    assert epoch_position({"epoch": 3, "partial": True}, None) == 3  # logs without the epoch size


def test_popularity_groups_are_tabled_as_the_mean_over_seeds(tmp_path):
    run = fake_run(tmp_path, {"prism": 0.1, "prism-seed1": 0.2, "sasrec": 0.3})
    for name, popular, tail in (("prism", 0.2, 0.01), ("prism-seed1", 0.4, 0.03), ("sasrec", 0.3, 0.05)):
        path = run / "eval" / name / "metrics.json"
        metrics = json.loads(path.read_text())
        metrics["groups"] = {g: {"recall@10": v, "ndcg@10": v / 2} for g, v in
                             (("popular", popular), ("medium", 0.0), ("long_tail", tail))}
        path.write_text(json.dumps(metrics))
    table = popularity_report(collect(run))
    assert table.splitlines()[0] == ("| model | seeds | popular R@10 | popular N@10 | medium R@10 | medium N@10 "
                                     "| long_tail R@10 | long_tail N@10 |")
    assert "| prism | 2 | 0.3000 | 0.1500 | 0.0000 | 0.0000 | 0.0200 | 0.0100 |" in table
    assert "| sasrec | 1 | 0.3000 | 0.1500 | 0.0000 | 0.0000 | 0.0500 | 0.0250 |" in table
    assert "## Test by popularity" in write_report(run)[0]
    assert popularity_report(collect(fake_run(tmp_path / "other", {"prism": 0.1}))) == ""  # no groups: no table
