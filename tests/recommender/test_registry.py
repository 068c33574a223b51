import dataclasses

import pytest

from prismrec.baselines.popularity import MostPopular
from prismrec.baselines.sasrec import SASRec
from prismrec.data.synthetic import write_synthetic_run
from prismrec.errors import MissingStageError, PrismrecError
from prismrec.recommender.config import RecommenderConfig
from prismrec.recommender.registry import (build_model, effective_config, input_stages, load_context,
                                           model_dir_name, model_dir_overrides, select_model)


def cfg(**kw):
    return dataclasses.replace(RecommenderConfig(), **kw)


def test_model_directory_names():
    assert model_dir_name(cfg()) == "prism"
    assert model_dir_name(cfg(use_dsi=False)) == "prism-no-dsi"
    assert model_dir_name(cfg(use_ssa=False, use_ats=False)) == "prism-no-ssa-no-ats"
    assert model_dir_name(cfg(model="tiger", use_dsi=False)) == "tiger"
    assert model_dir_name(cfg(model="sasrec", seed=2)) == "sasrec-seed2"
    assert model_dir_name(cfg(model="pop")) == "pop"
    assert model_dir_name(cfg(tie_heads=True, seed=1)) == "prism-tied-seed1"
    assert model_dir_name(cfg(model="sasrec", tie_heads=True)) == "sasrec"   # no SID heads to tie
    assert model_dir_name(cfg(item_id_input=True, use_dsi=False)) == "prism-no-dsi-item-ids"
    assert model_dir_name(cfg(model="sasrec", item_id_input=True)) == "sasrec"  # it reads item ids anyway
    assert model_dir_name(cfg(item_id_input=True, item_head=True, seed=1)) == "prism-item-ids-item-head-seed1"
    assert model_dir_name(cfg(model="sasrec", item_head=True)) == "sasrec"     # it is all item head
    assert model_dir_name(cfg(item_id_input=True, item_head=True, item_emb_std=1.0)) == "prism-item-ids-item-head-item-std1"
    assert model_dir_name(cfg(item_emb_std=1.0)) == "prism"                   # no item-id embeddings to start
    assert (model_dir_name(cfg(item_id_input=True, item_head=True, item_emb_scale=11.3))
            == "prism-item-ids-item-head-item-scale11.3")
    assert model_dir_name(cfg(item_emb_scale=4.0)) == "prism"
    assert (model_dir_name(cfg(item_id_input=True, item_head=True, item_emb_scale=32.0, item_id_dropout=0.25))
            == "prism-item-ids-item-head-item-scale32-item-drop0.25")
    assert (model_dir_name(cfg(item_id_input=True, item_head=True, item_head_recent=True, item_emb_scale=32.0))
            == "prism-item-ids-item-head-item-recent-item-scale32")
    assert (model_dir_name(cfg(item_id_input=True, item_head=True, item_head_cosine=True, item_id_dropout=0.25))
            == "prism-item-ids-item-head-item-cos-item-drop0.25")
    assert model_dir_name(cfg(sid_stage="tokenizer-prism-no-acd-dir")) == "prism-sids-prism-no-acd-dir"
    assert model_dir_name(cfg(sid_stage="tokenizer")) == "prism"             # its own SIDs, named as such
    assert model_dir_name(cfg(model="tiger", sid_stage="tokenizer")) == "tiger-sids-prism"
    with pytest.raises(PrismrecError, match="recommender.model"):
        model_dir_name(cfg(model="bert4rec"))
    with pytest.raises(PrismrecError, match="recommender.sid_stage"):
        model_dir_name(cfg(sid_stage="sids/custom"))


def test_model_directory_names_round_trip_through_their_overrides():
    from prismrec.config import PipelineConfig, apply_overrides

    for c in (cfg(), cfg(use_dsi=False, seed=2), cfg(tie_heads=True, use_ats=False),
              cfg(sid_stage="tokenizer-prism-no-acd-dir", tie_heads=True, seed=1),
              cfg(item_id_input=True, tie_heads=True, sid_stage="tokenizer-tiger", seed=3),
              cfg(model="tiger", item_id_input=True),
              cfg(model="tiger", item_head=True, sid_stage="tokenizer", tie_heads=True),
              cfg(model="tiger", sid_stage="tokenizer"),
              cfg(item_id_input=True, item_head=True, item_emb_std=0.25, sid_stage="tokenizer-tiger", seed=2),
              cfg(model="tiger", item_id_input=True, item_emb_std=1e-5),
              cfg(item_id_input=True, item_head=True, item_emb_scale=11.3, seed=1),
              cfg(item_id_input=True, item_emb_std=0.5, item_emb_scale=0.25, sid_stage="tokenizer-tiger"),
              cfg(item_id_input=True, item_head=True, item_id_dropout=0.5, seed=1),
              cfg(model="tiger", item_id_input=True, item_head=True, item_head_recent=True, item_emb_scale=32.0,
                  item_id_dropout=0.25, seed=2),
              cfg(item_id_input=True, item_head=True, item_head_cosine=True, item_emb_scale=32.0,
                  sid_stage="tokenizer-tiger", seed=1)):
        name = model_dir_name(c)
        parsed = apply_overrides(PipelineConfig(), model_dir_overrides(name)).recommender
        assert model_dir_name(parsed) == name


def test_a_model_directory_name_selects_every_switch_it_encodes():
    # the run's config has switches of its own (and a backbone): the name wins on what it encodes
    base = cfg(item_id_input=True, item_emb_scale=32.0, use_ats=False, seed=4, d_model=64, lr=1e-3)
    for name in ("prism", "tiger-item-ids-item-head-item-scale32-item-drop0.25-seed1", "prism-no-dsi",
                 "prism-item-ids-item-head-item-scale32-item-drop0.25-sids-tiger", "sasrec-seed2", "pop",
                 "prism-no-ssa-no-ats-tied-item-ids-item-std0.5-sids-prism-no-acd-dir-seed3"):
        picked = select_model(base, name)
        assert (picked.d_model, picked.lr) == (64, 1e-3)          # not encoded by names: kept
        if name not in ("prism", "pop"):                         # bare models keep the run's switches:
            assert model_dir_name(picked) == name
    assert select_model(base, "prism") == dataclasses.replace(base, model="prism")
    assert model_dir_name(select_model(base, "pop")) == "pop-seed4"
    picked = select_model(base, "tiger-item-ids-item-head-item-scale32-item-drop0.25-seed1")
    assert (picked.model, picked.item_head, picked.item_id_dropout, picked.seed) == ("tiger", True, 0.25, 1)
    picked = select_model(base, "prism-no-dsi")
    assert (picked.use_ats, picked.item_id_input, picked.item_emb_scale, picked.seed) == (True, False, 1.0, 0)


@pytest.mark.parametrize("name", ["gru4rec", "prism-item-id", "prism-seedx", "prism-seed0", "sasrec-item-ids",
                                  "tiger-no-dsi", "prism-item-scale32", "prism-sids-", ""])
def test_a_name_that_no_model_directory_has_is_refused(name):
    with pytest.raises(PrismrecError, match="model directory"):
        select_model(cfg(), name)


def test_tiger_runs_without_any_prism_module():
    tiger = effective_config(cfg(model="tiger"))
    assert (tiger.use_dsi, tiger.use_ssa, tiger.use_ats) == (False, False, False)
    assert input_stages(cfg(model="tiger")) == ["data", "tokenizer-tiger"]
    assert input_stages(cfg()) == ["data", "features", "tokenizer"]
    assert input_stages(cfg(sid_stage="tokenizer-prism-no-acd")) == ["data", "features", "tokenizer-prism-no-acd"]


def test_context_needs_the_right_stages(tmp_path):
    run = write_synthetic_run(tmp_path / "run", num_users=30)
    ctx = load_context(run, cfg(model="sasrec"))
    assert ctx.features is None and ctx.sids is None
    assert isinstance(build_model(ctx, cfg(model="sasrec")), SASRec)
    assert isinstance(build_model(ctx, cfg(model="pop")), MostPopular)
    with pytest.raises(MissingStageError, match="features"):
        load_context(run, cfg(model="prism"))
    with pytest.raises(MissingStageError, match="tokenizer-tiger"):
        load_context(run, cfg(model="tiger"))
    with pytest.raises(MissingStageError, match="tokenizer-prism-dir"):
        load_context(run, cfg(model="tiger", sid_stage="tokenizer-prism-dir"))
    with pytest.raises(MissingStageError, match="data"):
        load_context(tmp_path / "empty", cfg(model="sasrec"))
