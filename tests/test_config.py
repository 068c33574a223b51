"""Typed configs: YAML loading, dotted overrides, errors that name the key."""

from pathlib import Path

import pytest

import prismrec
from prismrec.config import PipelineConfig, apply_overrides, load_config
from prismrec.errors import PrismrecError


def test_defaults_match_the_paper():
    cfg = PipelineConfig()
    assert (cfg.tokenizer.num_layers, cfg.tokenizer.codebook_size, cfg.tokenizer.latent_dim) == (3, 256, 32)
    assert (cfg.tokenizer.beta, cfg.tokenizer.lambda_acd, cfg.tokenizer.lambda_hsa) == (0.25, 0.8, 0.2)
    assert (cfg.recommender.d_model, cfg.recommender.d_ff, cfg.recommender.gamma) == (128, 1024, 5e-4)
    assert cfg.data.max_history == 20 and cfg.data.k_core == 5


def test_yaml_subset_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("recommender:\n  epochs: 7\ndata:\n  k_core: 3\n")
    cfg = load_config(path, ["recommender.lr=0.001", "tokenizer.use_hsa=false"])
    assert cfg.recommender.epochs == 7 and cfg.data.k_core == 3
    assert cfg.recommender.lr == pytest.approx(1e-3) and cfg.tokenizer.use_hsa is False
    assert cfg.recommender.d_model == 128  # untouched default


@pytest.mark.parametrize("text, needle", [
    ("recommender:\n  epochz: 7\n", "epochz"),
    ("recommender:\n  epochs: seven\n", "recommender.epochs"),
    ("- a\n- b\n", "mapping"),
])
def test_bad_yaml_names_the_field(tmp_path, text, needle):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(PrismrecError, match=needle):
        load_config(path)


def test_bad_override_names_the_key():
    with pytest.raises(PrismrecError, match="recommender.nope"):
        apply_overrides(PipelineConfig(), ["recommender.nope=1"])
    with pytest.raises(PrismrecError, match="KEY=VALUE"):
        apply_overrides(PipelineConfig(), ["recommender.epochs"])


def test_missing_config_file_is_clear(tmp_path):
    with pytest.raises(PrismrecError, match="cannot read config"):
        load_config(tmp_path / "absent.yaml")


CONFIG_DIR = Path(prismrec.__file__).resolve().parent / "configs"  # package data (configs/ links here)
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_load(path):
    """Every file in configs/ names only real fields, with values of the right type, and changes something."""
    assert load_config(path) != PipelineConfig()


def test_beauty_cpu_config_is_the_cpu_reference_protocol():
    cfg = load_config(CONFIG_DIR / "beauty-cpu.yaml").recommender
    assert (cfg.encoder_layers, cfg.decoder_layers, cfg.d_ff, cfg.batch_size) == (2, 2, 512, 256)
    assert cfg.schedule_minutes == 105 and cfg.lr == pytest.approx(1e-3)
