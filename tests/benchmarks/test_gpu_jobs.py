"""The GPU protocol script names its jobs by model directory name (`--model NAME`): every name
must be one that `prismrec train` accepts and trains under that name, and the shared arguments
must not set what the names encode (the CLI refuses such a clash, which would cost device time)."""

import re
import shlex
from pathlib import Path

from prismrec.recommender.config import RecommenderConfig
from prismrec.recommender.registry import NAME_FIELDS, model_dir_name, select_model

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_beauty.sh"


def jobs() -> list[str]:
    block = re.search(r"^JOBS=\((.*?)^\)", SCRIPT.read_text(), flags=re.M | re.S).group(1)
    return block.split()


def test_every_gpu_job_is_a_model_directory_name():
    names = jobs()
    assert len(names) == len(set(names))
    assert {"prism", "tiger", "sasrec", "prism-no-dsi", "prism-item-ids-item-head-item-std1",
            "prism-item-ids-item-head-item-scale32-item-drop0.25-sids-tiger-seed1"} <= set(names)
    for name in names:
        cfg = select_model(RecommenderConfig(), name)
        assert name in ("prism", "tiger", "sasrec") or model_dir_name(cfg) == name


def test_the_shared_arguments_leave_the_named_fields_alone():
    text = SCRIPT.read_text()
    shared = " ".join(re.findall(r"^(?:GEN|PRECISION|BACKBONE)=\$\{\w+:-(.*)\}$", text, flags=re.M))
    assert "recommender.batch_size" in shared and "recommender.amp" in shared  # the pattern found them
    fields = [a.split("=", 1)[0].removeprefix("recommender.") for a in shlex.split(shared) if "=" in a]
    assert not set(fields) & set(NAME_FIELDS), fields
    assert "--seed" not in shared and "--no-" not in shared
