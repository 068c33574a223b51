"""Which model a config names, what it needs from the run directory, and how to build it.

Model directory names (``RUN_DIR/models/<name>``, ``RUN_DIR/eval/<name>``):
``prism``, ``prism-no-dsi``, ``prism-no-ssa-no-ats``, ..., ``tiger``, ``sasrec``,
``pop``, with ``-tied`` for tied output heads, ``-item-ids`` for item-id inputs, ``-item-head`` for the item
head, ``-item-recent`` for its query reading the most recent item, ``-item-cos`` for its cosine scores,
``-item-std<value>`` for item-id embeddings started from N(0, value), ``-item-scale<value>`` for item-id
embeddings scaled by value, ``-item-drop<value>`` for item-id rows dropped in training, ``-sids-<stage>``
for SIDs of another tokenizer stage (``prism-sids-prism-no-acd-dir`` reads ``tokenizer-prism-no-acd-dir``)
and ``-seed{N}`` appended when the seed is not 0.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from prismrec.artifacts import stage_fingerprint
from prismrec.config import PipelineConfig, apply_overrides
from prismrec.errors import PrismrecError
from prismrec.recommender.base import ModelContext, SequentialRecommender
from prismrec.recommender.config import RecommenderConfig

MODEL_NAMES = ("prism", "tiger", "sasrec", "pop")
SID_VARIANT = {"prism": "tokenizer", "tiger": "tokenizer-tiger"}
# on/off variants of a generative model: (suffix in model directory names, config field), in name order
FLAG_SUFFIXES = (("tied", "tie_heads"), ("item-ids", "item_id_input"), ("item-head", "item_head"),
                 ("item-recent", "item_head_recent"), ("item-cos", "item_head_cosine"))
# numeric settings of the item-id embeddings: (suffix, field), named only away from their default
ITEM_ID_SUFFIXES = (("item-std", "item_emb_std"), ("item-scale", "item_emb_scale"), ("item-drop", "item_id_dropout"))
DEFAULTS = RecommenderConfig()


def check_model(cfg: RecommenderConfig) -> None:
    if cfg.model not in MODEL_NAMES:
        raise PrismrecError(f"recommender.model: expected one of {', '.join(MODEL_NAMES)}, got {cfg.model!r}")


def effective_config(cfg: RecommenderConfig) -> RecommenderConfig:
    """The config the model really runs with: TIGER is PRISM's backbone with every module off."""
    check_model(cfg)
    if cfg.model == "tiger":
        return dataclasses.replace(cfg, use_dsi=False, use_ssa=False, use_ats=False)
    return cfg


def sid_stage(cfg: RecommenderConfig) -> str:
    """Tokenizer stage directory a generative model reads its SIDs from."""
    if cfg.sid_stage and not (cfg.sid_stage == "tokenizer" or cfg.sid_stage.startswith("tokenizer-")):
        raise PrismrecError(f"recommender.sid_stage: expected a tokenizer stage directory of the run "
                            f"(tokenizer, tokenizer-tiger, tokenizer-prism-no-acd, ...), got {cfg.sid_stage!r}")
    return cfg.sid_stage or SID_VARIANT[cfg.model]


def _sid_suffix(stage: str) -> str:
    """Short name of a tokenizer stage in model directory names (``tokenizer`` -> ``prism``)."""
    return "prism" if stage == "tokenizer" else stage.removeprefix("tokenizer-")


def model_dir_name(cfg: RecommenderConfig) -> str:
    check_model(cfg)
    name = cfg.model
    if cfg.model == "prism":
        name += "".join(f"-no-{m}" for m, on in (("dsi", cfg.use_dsi), ("ssa", cfg.use_ssa), ("ats", cfg.use_ats))
                        if not on)
    if cfg.model in SID_VARIANT:
        name += "".join(f"-{suffix}" for suffix, field in FLAG_SUFFIXES if getattr(cfg, field))
        if cfg.item_id_input:
            name += "".join(f"-{suffix}{getattr(cfg, field):g}" for suffix, field in ITEM_ID_SUFFIXES
                            if getattr(cfg, field) != getattr(DEFAULTS, field))
        stage = sid_stage(cfg)
        name += "" if stage == SID_VARIANT[cfg.model] else "-sids-" + _sid_suffix(stage)
    if cfg.seed != 0:
        name += f"-seed{cfg.seed}"
    return name


def model_dir_overrides(name: str) -> list[str]:
    """Config overrides of a model directory name, the inverse of ``model_dir_name``:
    ``prism-no-dsi-tied-item-ids-sids-prism-no-acd-seed1`` -> model prism, use_dsi false, tied
    heads, item-id inputs, SIDs of tokenizer-prism-no-acd, seed 1."""
    name, _, seed = name.partition("-seed")
    name, _, sids = name.partition("-sids-")
    values = []
    for suffix, field in reversed(ITEM_ID_SUFFIXES):
        match = re.fullmatch(rf"(.*)-{suffix}([0-9.]+(?:e[-+]?[0-9]+)?)", name)
        if match:
            name = match.group(1)
            values.insert(0, f"recommender.{field}={match.group(2)}")
    flags = []
    for suffix, field in reversed(FLAG_SUFFIXES):
        if name.endswith(f"-{suffix}"):
            name = name.removesuffix(f"-{suffix}")
            flags.append(f"recommender.{field}=true")
    model, *removed = name.split("-no-")
    stage = "tokenizer" if sids == "prism" else f"tokenizer-{sids}"
    return ([f"recommender.model={model}"] + [f"recommender.use_{m}=false" for m in removed] + flags
            + values
            + ([f"recommender.sid_stage={stage}"] if sids else [])
            + ([f"recommender.seed={seed}"] if seed else []))


# the config fields a model directory name encodes (model_dir_name)
NAME_FIELDS = ("model", "use_dsi", "use_ssa", "use_ats", *(field for _, field in FLAG_SUFFIXES),
               *(field for _, field in ITEM_ID_SUFFIXES), "sid_stage", "seed")


def select_model(cfg: RecommenderConfig, name: str) -> RecommenderConfig:
    """``cfg`` set to the model ``name``: prism, tiger, sasrec or pop (the other fields as ``cfg``
    has them), or the name of a model directory such as ``tiger-item-ids-item-head-seed1``, which
    sets every field its name encodes (NAME_FIELDS) -- the other fields (backbone, learning rate)
    still come from ``cfg``. A trained model is thus named the way ``prismrec report`` lists it,
    without repeating the switches it was trained with."""
    if name in MODEL_NAMES:
        return dataclasses.replace(cfg, model=name)
    try:
        parsed = apply_overrides(PipelineConfig(), model_dir_overrides(name)).recommender
        valid = parsed.model in MODEL_NAMES and model_dir_name(parsed) == name
    except PrismrecError:  # a suffix with a value of the wrong type (``-seedx``)
        valid = False
    if not valid:
        raise PrismrecError(f"--model {name!r}: expected {', '.join(MODEL_NAMES)} or the name of a model "
                            "directory (RUN_DIR/models/<name>, as `prismrec info RUN_DIR` lists them, e.g. "
                            "prism-no-dsi or tiger-item-ids-item-head-seed1)")
    return dataclasses.replace(cfg, **{field: getattr(parsed, field) for field in NAME_FIELDS})


def input_stages(cfg: RecommenderConfig) -> list[str]:
    """Run-directory stages the model reads."""
    check_model(cfg)
    if cfg.model == "prism":
        return ["data", "features", sid_stage(cfg)]
    if cfg.model == "tiger":
        return ["data", sid_stage(cfg)]
    return ["data"]


def stage_inputs(run_dir: str | Path, cfg: RecommenderConfig) -> dict[str, str]:
    """Fingerprints of the input stages (a retrained tokenizer invalidates the model)."""
    return {name: stage_fingerprint(Path(run_dir) / name) for name in input_stages(cfg)}


def load_context(run_dir: str | Path, cfg: RecommenderConfig) -> ModelContext:
    """Everything the model needs from the run directory, with a clear error for a missing stage."""
    from prismrec.data.dataset import load_prepared

    check_model(cfg)
    data = load_prepared(run_dir)
    if cfg.model == "prism":
        from prismrec.features.store import load_features
        from prismrec.tokenizer.store import load_sids

        return ModelContext(data=data, features=load_features(run_dir), sids=load_sids(run_dir, sid_stage(cfg)))
    if cfg.model == "tiger":
        from prismrec.tokenizer.store import load_sids

        return ModelContext(data=data, sids=load_sids(run_dir, sid_stage(cfg)))
    return ModelContext(data=data)


def build_model(ctx: ModelContext, cfg: RecommenderConfig) -> SequentialRecommender:
    cfg = effective_config(cfg)
    if cfg.model == "sasrec":
        from prismrec.baselines.sasrec import SASRec

        return SASRec.from_context(ctx, cfg)
    if cfg.model == "pop":
        from prismrec.baselines.popularity import MostPopular

        return MostPopular.from_context(ctx, cfg)
    # imported lazily: the generative model is the heaviest module and optional for the baselines
    from prismrec.recommender.isr import IntegratedSemanticRecommender

    return IntegratedSemanticRecommender.from_context(ctx, cfg)
