"""The GPU protocol script names each job after the model directory its arguments train:
packing, evaluation and the WEIGHTS / RECENT steps look the models up by those names."""

import re
import shlex
from pathlib import Path

from prismrec.config import PipelineConfig, apply_overrides
from prismrec.recommender.registry import model_dir_name

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_beauty.sh"
SWITCHES = {"--no-dsi": "recommender.use_dsi=false", "--no-ssa": "recommender.use_ssa=false",
            "--no-ats": "recommender.use_ats=false"}


def jobs() -> dict[str, list[str]]:
    text = SCRIPT.read_text()
    variables = dict(re.findall(r'^(ITEM_IDS|ITEM_HEAD)="([^"]*)"', text, flags=re.M))
    block = re.search(r"^JOBS=\((.*?)^\)", text, flags=re.M | re.S).group(1)
    found = {}
    for name, args in re.findall(r'"([^|"]+)\|([^"]*)"', block):
        for _ in range(2):  # ITEM_HEAD refers to ITEM_IDS
            for var, value in variables.items():
                args = args.replace(f"${var}", value)
        found[name] = [a for a in shlex.split(args) if not a.startswith("$")]
    return found


def overrides(args: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(args):
        if args[i] in SWITCHES:
            out.append(SWITCHES[args[i]])
            i += 1
        else:
            flag, value = args[i], args[i + 1]
            out.append({"--model": f"recommender.model={value}", "--seed": f"recommender.seed={value}",
                        "--set": value}[flag])
            i += 2
    return out


def test_every_gpu_job_is_named_after_its_model_directory():
    found = jobs()
    assert {"prism", "tiger", "sasrec", "prism-no-dsi", "prism-item-ids-item-head-item-std1"} <= set(found)
    for name, args in found.items():
        cfg = apply_overrides(PipelineConfig(), overrides(args)).recommender
        assert model_dir_name(cfg) == name, args
