"""The Integrated Semantic Recommender on tiny synthetic catalogs."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from prismrec.data.dataset import load_prepared
from prismrec.data.synthetic import write_synthetic_run
from prismrec.errors import PrismrecError
from prismrec.features.store import ItemFeatures
from prismrec.recommender.base import Batch, ModelContext
from prismrec.recommender.config import RecommenderConfig
from prismrec.recommender.isr import IntegratedSemanticRecommender

TINY = RecommenderConfig(d_model=32, num_heads=2, encoder_layers=1, decoder_layers=1, d_ff=64, d_moe=32,
                         d_content_proj=16, d_collab_proj=8, beam_size=8)


def random_unique_codes(num_items: int, vocab: int, depth: int, rng) -> np.ndarray:
    flat = rng.choice(vocab ** depth, size=num_items, replace=False)
    return np.stack(np.unravel_index(flat, [vocab] * depth), axis=1).astype(np.int64)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> ModelContext:
    data = load_prepared(write_synthetic_run(tmp_path_factory.mktemp("run")))
    rng = np.random.default_rng(0)
    n = data.num_items
    from prismrec.tokenizer.store import SemanticIds

    sids = SemanticIds(codes=random_unique_codes(n, 8, 3, rng),
                       codebooks=rng.normal(size=(3, 8, 16)).astype(np.float32),
                       item_ids=data.items["item_id"].to_numpy())
    features = ItemFeatures(content=rng.normal(size=(n, 24)).astype(np.float32),
                            collab=rng.normal(size=(n, 64)).astype(np.float32), tag_embeddings=[])
    return ModelContext(data=data, features=features, sids=sids)


@pytest.fixture(scope="module")
def tiger_ctx(ctx) -> ModelContext:
    """TIGER-style SIDs: 3 coarse tokens with collisions plus a 4th token that tells them apart."""
    from prismrec.tokenizer.store import SemanticIds

    rng = np.random.default_rng(1)
    n = ctx.num_items
    coarse = rng.integers(0, 4, size=(n, 3))
    _, group = np.unique(coarse, axis=0, return_inverse=True)
    suffix = np.zeros(n, dtype=np.int64)
    for g in np.unique(group):  # rank within each colliding group
        members = np.flatnonzero(group == g)
        suffix[members] = np.arange(len(members))
    codes = np.concatenate([coarse, suffix[:, None]], axis=1)
    sids = SemanticIds(codes=codes, codebooks=rng.normal(size=(3, 4, 16)).astype(np.float32),
                       item_ids=ctx.sids.item_ids)
    return ModelContext(data=ctx.data, features=ctx.features, sids=sids)


@pytest.fixture
def one_thread():
    """Tiny models train faster on one thread; on a shared 2-core machine two threads thrash."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def batch_of(ctx: ModelContext, split: str = "train", size: int = 32) -> Batch:
    examples = ctx.data.examples(split)
    return Batch.from_examples(examples, np.arange(min(size, len(examples))), "cpu")


def build(ctx, seed: int = 0, **overrides) -> IntegratedSemanticRecommender:
    torch.manual_seed(seed)
    return IntegratedSemanticRecommender.from_context(ctx, replace(TINY, **overrides))


def assert_valid_ranking(items: torch.Tensor, scores: torch.Tensor, num_items: int) -> None:
    assert (items >= 0).all() and (items < num_items).all()
    assert torch.isfinite(scores).all()
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    assert all(len(set(row.tolist())) == len(row) for row in items)


def test_loss_parts_and_ranking_shapes(ctx):
    model = build(ctx)
    batch = batch_of(ctx)
    out = model.calculate_loss(batch)
    assert set(out) == {"loss", "gen", "ssa_reg", "ssa_cls"}
    assert torch.isfinite(out["loss"]) and out["loss"].requires_grad
    assert torch.allclose(out["loss"], out["gen"] + TINY.gamma * (out["ssa_reg"] + out["ssa_cls"]))
    model.eval()
    items, scores = model.rank(batch, k=5)
    assert items.shape == scores.shape == (len(batch.target), 5)
    assert_valid_ranking(items, scores, ctx.num_items)


@pytest.mark.parametrize("use_ats,tie_heads,item_id_input", [(True, False, False), (False, False, False),
                                                             (True, True, False), (True, False, True)],
                         ids=["ats", "no-ats", "tied-heads", "item-id-input"])
def test_beam_search_equals_exhaustive_scoring(ctx, use_ats, tie_heads, item_id_input):
    model = build(ctx, use_ats=use_ats, tie_heads=tie_heads, item_id_input=item_id_input,
                  beam_size=ctx.num_items).eval()
    if item_id_input:  # trained item embeddings, not the zero start
        torch.nn.init.normal_(model.item_emb.weight)
    batch = batch_of(ctx, "valid", size=6)
    items, scores = model.rank(batch, k=10)
    every_item = torch.arange(ctx.num_items).expand(len(batch.target), -1)
    exhaustive = model.score_items(batch, every_item)   # teacher forcing, not the beam-search path
    top = exhaustive.topk(10, dim=1)
    assert torch.equal(items, top.indices)
    assert torch.allclose(scores, top.values, atol=1e-4)
    # the scores are log-probabilities of a distribution over the whole catalog
    assert torch.allclose(exhaustive.exp().sum(1), torch.ones(len(batch.target)), atol=1e-4)


def test_narrow_beam_still_returns_valid_sorted_items(ctx):
    model = build(ctx, beam_size=4).eval()
    items, scores = model.rank(batch_of(ctx, "test"), k=12)   # beam widens to k
    assert items.shape == (32, 12)
    assert_valid_ranking(items, scores, ctx.num_items)


def test_padding_and_empty_histories_do_not_change_or_break_scores(ctx):
    model = build(ctx).eval()
    examples = ctx.data.examples("test")
    index = np.arange(8)
    full = Batch(*(torch.as_tensor(a[index]) for a in (examples.history, examples.time_bucket, examples.length,
                                                        examples.target)))  # padded to 20 columns
    trimmed = Batch.from_examples(examples, index, "cpu")
    assert trimmed.history.shape[1] < full.history.shape[1]
    a, sa = model.rank(full, 5)
    b, sb = model.rank(trimmed, 5)
    assert torch.equal(a, b) and torch.allclose(sa, sb, atol=1e-5)
    empty = Batch(torch.full((2, 3), -1), torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, dtype=torch.long),
                  torch.tensor([0, 1]))
    assert torch.isfinite(model.calculate_loss(empty)["loss"])
    items, _ = model.rank(empty, 5)
    assert (items >= 0).all()


def parameter_names(model) -> set[str]:
    return {name for name, _ in model.named_parameters()}


def test_each_switch_removes_its_module(ctx, monkeypatch):
    full = build(ctx)
    names = parameter_names(full)
    assert any(n.startswith("dsi.") for n in names) and any(n.startswith("ssa.") for n in names)

    no_dsi = build(ctx, use_dsi=False)
    dsi_params = sum(p.numel() for p in full.dsi.parameters())
    assert no_dsi.dsi is None and not any(n.startswith("dsi.") for n in parameter_names(no_dsi))
    assert full.num_parameters()["total"] - no_dsi.num_parameters()["total"] == dsi_params
    assert not hasattr(no_dsi, "item_content")

    no_ssa = build(ctx, use_ssa=False)
    assert no_ssa.ssa is None and not any(n.startswith("ssa.") for n in parameter_names(no_ssa))
    out = no_ssa.calculate_loss(batch_of(ctx))
    assert set(out) == {"loss", "gen"} and torch.equal(out["loss"].detach(), out["gen"])
    assert not hasattr(no_ssa, "item_tags")

    # ATS has no parameters: the full model's weights load strictly into a model without it,
    # which then never computes a temperature but scores differently
    no_ats = build(ctx, use_ats=False)
    assert parameter_names(no_ats) == names and not hasattr(no_ats, "item_branching")
    no_ats.load_state_dict(full.state_dict(), strict=True)
    monkeypatch.setattr(no_ats, "temperature", lambda n: pytest.fail("ATS off but a temperature was computed"))
    full.eval(), no_ats.eval()
    batch = batch_of(ctx)
    loss_ats = full.calculate_loss(batch)["gen"]
    loss_plain = no_ats.calculate_loss(batch)["gen"]
    assert not torch.allclose(loss_ats, loss_plain)
    items, scores = no_ats.rank(batch, 5)
    assert_valid_ranking(items, scores, ctx.num_items)


def test_ats_temperature_follows_eq16(ctx):
    model = build(ctx)
    assert model.n_ref == pytest.approx(np.sqrt(ctx.num_items) / 2)
    n = torch.tensor([0.0, 1.0, 8.0, 1e6])
    tau = model.temperature(n)
    assert tau[0] == pytest.approx(TINY.tau_max) and tau[-1] == pytest.approx(TINY.tau_min)
    assert (tau[:-1] > tau[1:]).all()   # denser branches get sharper (lower) temperatures
    expected = 0.5 + 0.5 * np.exp(-0.5 * 8.0 / model.n_ref)
    assert float(tau[2]) == pytest.approx(expected)


def test_num_parameters_counts_two_of_three_experts(ctx):
    model = build(ctx)
    counts = model.num_parameters()
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["total"] - counts["active"] == model.dsi.expert_parameters() > 0
    plain = build(ctx, use_dsi=False).num_parameters()
    assert plain["total"] == plain["active"]


@pytest.mark.parametrize("dense", [False, True], ids=["routed", "dense"])
def test_dsi_routes_each_token_to_its_top2_experts_only(dense):
    from prismrec.recommender.isr import DynamicSemanticIntegration

    torch.manual_seed(0)
    dsi = DynamicSemanticIntegration(3, 32, 12, 8, 6, TINY).eval()
    dsi.dense_experts = dense
    e_id, q = torch.randn(4, 5, 3, 32), torch.randn(4, 5, 3, 6)
    content, collab = torch.randn(4, 5, 12), torch.randn(4, 5, 8)
    got = dsi(e_id, content, collab, q)
    # reference: every expert on every token, mixed with the Eq. 13 weights (zero for the unchosen)
    cont = torch.stack([p(content) for p in dsi.content_proj], 2)
    coll = torch.stack([p(collab) for p in dsi.collab_proj], 2)
    x = torch.cat([e_id, cont, coll, q], -1)
    weights = dsi.routing_weights(dsi.gate(x))
    assert ((weights > 0).sum(-1) == 2).all() and torch.allclose(weights.sum(-1), torch.ones(4, 5, 3))
    experts = torch.stack([F.gelu(x @ dsi.expert_w1[e] + dsi.expert_b1[e]) @ dsi.expert_w2[e] + dsi.expert_b2[e]
                           for e in range(3)], -2)
    want = e_id + dsi.eta * dsi.out((weights.unsqueeze(-1) * experts).sum(-2))
    assert torch.allclose(got, want, atol=1e-5)


def test_dense_and_routed_experts_give_the_same_gradients():
    """The GPU way (dense, no host sync) and the CPU way (routed) train the same model."""
    from prismrec.recommender.isr import DynamicSemanticIntegration

    torch.manual_seed(0)
    dsi = DynamicSemanticIntegration(3, 32, 12, 8, 6, TINY).eval()
    inputs = (torch.randn(4, 5, 3, 32), torch.randn(4, 5, 12), torch.randn(4, 5, 8), torch.randn(4, 5, 3, 6))
    grads = {}
    for dense in (False, True):
        dsi.dense_experts = dense
        dsi.zero_grad()
        (dsi(*inputs) ** 2).sum().backward()
        grads[dense] = {name: p.grad.clone() for name, p in dsi.named_parameters()}
    for name, g in grads[False].items():
        assert torch.allclose(g, grads[True][name], atol=1e-5, rtol=1e-4), name
    assert grads[True]["expert_w1"].abs().sum() > 0


def test_paper_sized_backbone_builds_and_ranks(ctx):
    torch.manual_seed(0)
    model = IntegratedSemanticRecommender.from_context(ctx, RecommenderConfig(beam_size=20)).eval()
    assert len(model.encoder.layers) == 4 and len(model.decoder.layers) == 4
    assert model.encoder.layers[0].linear1.out_features == 1024 and model.token_emb.embedding_dim == 128
    items, scores = model.rank(batch_of(ctx, "test", 4), k=20)
    assert_valid_ranking(items, scores, ctx.num_items)


@pytest.mark.parametrize("modules_on", [False, True])
def test_tiger_mode_with_four_token_sids(tiger_ctx, modules_on):
    assert tiger_ctx.sids.length == 4 and tiger_ctx.sids.codebooks.shape[0] == 3
    model = build(tiger_ctx, use_dsi=modules_on, use_ssa=modules_on, use_ats=modules_on,
                  beam_size=tiger_ctx.num_items)
    batch = batch_of(tiger_ctx)
    assert torch.isfinite(model.calculate_loss(batch)["loss"])
    model.eval()
    items, scores = model.rank(batch, k=10)
    assert_valid_ranking(items, scores, tiger_ctx.num_items)
    exhaustive = model.score_items(batch, torch.arange(tiger_ctx.num_items).expand(len(batch.target), -1))
    assert torch.equal(items, exhaustive.topk(10, dim=1).indices)


def test_training_steps_lower_the_loss(ctx, one_thread):
    model = build(ctx, dropout=0.0)
    batch = batch_of(ctx, size=32)
    model.eval()
    with torch.no_grad():
        before = float(model.calculate_loss(batch)["loss"])
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(12):
        loss = model.calculate_loss(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        after = float(model.calculate_loss(batch)["loss"])
    assert after < before - 1.0


def test_gradients_reach_every_module(ctx):
    model = build(ctx)
    model.calculate_loss(batch_of(ctx, size=64))["loss"].backward()

    def moved(p):
        return p.grad is not None and float(p.grad.abs().sum()) > 0

    dsi, ssa = model.dsi, model.ssa
    assert moved(dsi.eta) and moved(dsi.gate.weight) and moved(dsi.out.weight)
    assert all(moved(proj[0].weight) for proj in dsi.content_proj)
    assert all(moved(proj[0].weight) for proj in dsi.collab_proj)
    per_expert = dsi.expert_w1.grad.abs().sum(dim=(1, 2))
    assert (per_expert > 0).sum() >= 2          # top-2 routing: at least two experts trained
    assert all(moved(h.weight) for h in ssa.regress) and all(moved(h.weight) for h in ssa.classify)
    assert all(moved(h.weight) for h in model.heads)


def test_tied_heads_score_tokens_with_their_input_embeddings(ctx):
    model = build(ctx, tie_heads=True)
    assert model.heads is None and not any(n.startswith("heads.") for n in parameter_names(model))
    assert model.num_parameters()["total"] < build(ctx).num_parameters()["total"]
    # depth d's logits are o . E[depth-d rows] / sqrt(d_model) + bias
    out = torch.randn(5, TINY.d_model)
    start, stop = model.vocab_slices[1]
    with torch.no_grad():
        model.head_bias[1].copy_(torch.randn(stop - start))
    expected = out @ model.token_emb.weight[start:stop].T / TINY.d_model ** 0.5 + model.head_bias[1]
    assert torch.allclose(model.logits(out, 1), expected, atol=1e-5)
    # the output path trains the embeddings: a target's last token, which the decoder never
    # reads (teacher forcing feeds the first T-1), and which no history holds, gets gradient
    batch = batch_of(ctx, size=2)
    history_tokens = set(model.item_tokens[batch.history.clamp_min(0)][batch.history >= 0].flatten().tolist())
    target_tokens = set(model.item_tokens[batch.target, -1].tolist())
    model.calculate_loss(batch)["loss"].backward()
    unseen = sorted(target_tokens - history_tokens)
    assert unseen and float(model.token_emb.weight.grad[unseen].abs().sum()) > 0
    untied = build(ctx)
    untied.calculate_loss(batch)["loss"].backward()
    assert float(untied.token_emb.weight.grad[unseen].abs().sum()) == 0   # there, only heads see them
    assert all(b.grad is not None and float(b.grad.abs().sum()) > 0 for b in model.head_bias)


def test_item_id_input_tells_apart_the_history_items_and_trains_only_theirs(ctx):
    model = build(ctx, item_id_input=True, dropout=0.0).eval()
    assert build(ctx).item_emb is None   # off by default: the paper's input embedding
    batch = batch_of(ctx, size=4)
    # zero at the start: the encoder input is the paper's Eq. 10 until the embeddings train
    assert float(model.item_emb.weight.detach().abs().sum()) == 0
    memory, pad = model.encode(batch)
    real = ~pad[0]   # padding slots read item 0's rows; nothing attends to them
    in_history = batch.history[0][batch.history[0] >= 0]
    elsewhere = sorted(set(range(ctx.num_items)) - set(batch.history[0].tolist()))
    with torch.no_grad():
        model.item_emb.weight[elsewhere] = 1.0    # items user 0 never had: its memory is unchanged
    assert torch.allclose(model.encode(batch)[0][0][real], memory[0][real], atol=1e-6)
    with torch.no_grad():
        model.item_emb.weight[in_history[-1]] = 1.0
    assert not torch.allclose(model.encode(batch)[0][0][real], memory[0][real], atol=1e-3)
    # gradient reaches the rows of history items, and no other row
    model.train()
    model.item_emb.weight.grad = None
    model.calculate_loss(batch)["loss"].backward()
    grad_rows = torch.nonzero(model.item_emb.weight.grad.abs().sum(1)).flatten()
    assert set(grad_rows.tolist()) == set(batch.history[batch.history >= 0].tolist())


def test_item_emb_std_sets_the_item_id_embeddings_start(ctx):
    torch.manual_seed(0)
    model = build(ctx, item_id_input=True, item_emb_std=0.5)
    std = float(model.item_emb.weight.detach().std())
    assert 0.45 < std < 0.55
    assert float(build(ctx, item_id_input=True).item_emb.weight.detach().abs().sum()) == 0   # default: zeros
    with pytest.raises(PrismrecError, match="item_emb_std"):
        build(ctx, item_id_input=True, item_emb_std=-1.0)


def test_item_emb_scale_multiplies_the_item_ids_wherever_they_enter(ctx):
    # scale c on rows w is the model with scale 1 on rows c * w (input and item head alike),
    # and the rows' gradient is c times as large: under Adam, c multiplies their learning rate
    scaled = build(ctx, item_id_input=True, item_head=True, item_emb_scale=4.0, dropout=0.0).eval()
    plain = build(ctx, item_id_input=True, item_head=True, dropout=0.0).eval()
    with torch.no_grad():
        torch.nn.init.normal_(scaled.item_emb.weight, std=0.1)
    plain.load_state_dict(scaled.state_dict())
    with torch.no_grad():
        plain.item_emb.weight.mul_(4.0)
    batch = batch_of(ctx, size=8)
    a, b = scaled.calculate_loss(batch), plain.calculate_loss(batch)
    assert torch.allclose(a["item"], b["item"], atol=1e-5) and torch.allclose(a["gen"], b["gen"], atol=1e-5)
    a["loss"].backward()
    b["loss"].backward()
    assert torch.allclose(scaled.item_emb.weight.grad, 4.0 * plain.item_emb.weight.grad, atol=1e-6)
    assert float(plain.item_emb.weight.grad.abs().sum()) > 0
    with pytest.raises(PrismrecError, match="item_emb_scale"):
        build(ctx, item_id_input=True, item_emb_scale=0.0)


def test_item_id_dropout_drops_whole_rows_in_training_only(ctx):
    # the dropped share of history positions carries no item-id gradient; the kept rows are
    # scaled by 1 / (1 - p); evaluation sees every row, unscaled
    p = 0.5
    model = build(ctx, item_id_input=True, item_id_dropout=p, dropout=0.0)
    plain = build(ctx, item_id_input=True, dropout=0.0)
    with torch.no_grad():
        torch.nn.init.normal_(model.item_emb.weight, std=0.1)
    plain.load_state_dict(model.state_dict())
    batch = batch_of(ctx, size=16)
    model.eval(), plain.eval()
    assert torch.equal(model.encode(batch)[0], plain.encode(batch)[0])
    model.train()
    torch.manual_seed(0)
    model.item_emb.weight.retain_grad()
    captured = []
    hook = model.item_emb.register_forward_hook(lambda m, i, out: captured.append(out) or out.retain_grad())
    model.encode(batch)[0].sum().backward()
    hook.remove()
    grad = captured[0].grad                                           # (B, S, d) per history position
    real = batch.history >= 0
    dropped = (grad.abs().sum(-1) == 0) & real
    share = float(dropped.sum()) / float(real.sum())
    assert 0.3 < share < 0.7                                          # about p of the real positions
    assert bool((grad.abs().sum(-1) > 0)[real & ~dropped].all())
    with pytest.raises(PrismrecError, match="item_id_dropout"):
        build(ctx, item_id_input=True, item_id_dropout=1.0)


def trained_item_head(ctx, **overrides) -> IntegratedSemanticRecommender:
    model = build(ctx, item_head=True, item_id_input=True, **overrides).eval()
    with torch.no_grad():   # trained-looking item tables, not their zero start
        torch.nn.init.normal_(model.item_emb.weight)
        torch.nn.init.normal_(model.item_bias)
    return model


@pytest.mark.parametrize("weight", [1.0, 0.3])
def test_item_head_ranking_equals_exhaustive_combined_scoring(ctx, weight):
    # a beam as wide as the catalog holds every item: the ranking must be the exhaustive one
    model = trained_item_head(ctx, beam_size=ctx.num_items, item_score_weight=weight)
    batch = batch_of(ctx, "valid", size=6)
    items, scores = model.rank(batch, k=10)
    every_item = torch.arange(ctx.num_items).expand(len(batch.target), -1)
    exhaustive = model.score_items(batch, every_item)
    top = exhaustive.topk(10, dim=1)
    assert torch.equal(items, top.indices)
    assert torch.allclose(scores, top.values, atol=1e-4)
    # the combined score is the SID log-probability plus the weighted item log-probability
    memory, pad = model.encode(batch)
    sid = model.sid_log_probs(memory, pad, every_item)
    first = model.first_output(memory, pad)
    item = model.item_log_probs(first, memory)
    assert torch.allclose(item.exp().sum(1), torch.ones(len(batch.target)), atol=1e-4)
    assert torch.allclose(exhaustive, sid + weight * item, atol=1e-4)


def test_item_head_with_a_narrow_beam_adds_the_heads_own_top_items(ctx):
    model = trained_item_head(ctx, beam_size=3)
    batch = batch_of(ctx, "test")
    items, scores = model.rank(batch, k=8)     # beam widens to 8; the head adds its top 8
    assert_valid_ranking(items, scores, ctx.num_items)
    assert torch.allclose(scores, model.score_items(batch, items), atol=1e-4)
    memory, pad = model.encode(batch)
    first = model.first_output(memory, pad)
    favourite = model.item_log_probs(first, memory).argmax(1, keepdim=True)
    plain = build(ctx, item_id_input=True, beam_size=3).eval()
    plain.load_state_dict({n: v for n, v in model.state_dict().items() if n != "item_bias"})
    beam_items, _ = plain.rank(batch, k=8)
    # the head's favourite is a candidate: ranked, or scored below everything ranked
    assert (~(beam_items == favourite).any(1)).any()   # the beam alone misses it for some users
    favourite_score = model.score_items(batch, favourite).squeeze(1)
    ranked = (items == favourite).any(1)
    assert (ranked | (favourite_score <= scores[:, -1] + 1e-5)).all()
    assert ranked.any()


def test_one_candidate_pass_ranks_as_each_weight_would(ctx):
    from prismrec.evaluation.evaluator import best_weight_metrics, rank_examples, rank_examples_by_weight
    from prismrec.evaluation.metrics import metrics_from_positions, target_positions

    weights = [0.0, 0.5, 4.0]
    model = trained_item_head(ctx, beam_size=3, item_score_weights=weights)
    examples = ctx.data.examples("valid")
    ranked = rank_examples_by_weight(model, examples, model.cfg, k=5, batch_size=7)
    assert list(ranked) == weights
    for weight in weights:
        model.cfg = replace(model.cfg, item_score_weight=weight)
        assert np.array_equal(ranked[weight], rank_examples(model, examples, k=5, batch_size=7))
    assert not np.array_equal(ranked[0.0], ranked[4.0])          # the weights do rank differently
    results = {w: metrics_from_positions(target_positions(r, examples.target)) for w, r in ranked.items()}
    best = best_weight_metrics(results)
    assert best["ndcg@10"] == max(m["ndcg@10"] for m in results.values())
    assert results[best["item_score_weight"]]["ndcg@10"] == best["ndcg@10"]
    assert best_weight_metrics({0.5: {"ndcg@10": 0.1}, 1.0: {"ndcg@10": 0.1}})["item_score_weight"] == 0.5
    # no item head: one ranking, no weight
    plain = build(ctx, beam_size=3).eval()
    assert list(rank_examples_by_weight(plain, examples, plain.cfg, k=5)) == [None]
    assert "item_score_weight" not in best_weight_metrics({None: {"ndcg@10": 0.2}})
    for bad in ([-1.0], [float("inf")]):
        with pytest.raises(PrismrecError, match="item_score_weights"):
            build(ctx, item_head=True, item_score_weights=bad)


def test_item_head_loss_and_gradient_paths(ctx):
    model = build(ctx, item_head=True)
    assert build(ctx).item_bias is None and "item" not in build(ctx).calculate_loss(batch_of(ctx))
    batch = batch_of(ctx)
    out = model.calculate_loss(batch)
    assert set(out) == {"loss", "gen", "ssa_reg", "ssa_cls", "item"}
    assert torch.allclose(out["loss"], out["gen"] + TINY.gamma * (out["ssa_reg"] + out["ssa_cls"]) + out["item"])
    # the full-softmax item loss alone reaches the bias of every item and the tokens of every item
    model.zero_grad()
    memory, pad = model.encode(batch)
    first = model.decode(memory, pad, model.item_tokens[batch.target, None, :-1])[:, 0, 0]
    F.nll_loss(model.item_log_probs(first, memory), batch.target).backward()
    assert (model.item_bias.grad != 0).all()
    used = torch.unique(model.item_tokens)
    assert (model.token_emb.weight.grad[used].abs().sum(1) > 0).all()
    assert model.bos.grad is not None and float(model.bos.grad.abs().sum()) > 0


def test_item_head_recent_query_reads_the_most_recent_item(ctx):
    with pytest.raises(PrismrecError, match="item_head_recent"):
        build(ctx, item_head_recent=True)
    plain = build(ctx, item_head=True, item_id_input=True).eval()
    recent = build(ctx, item_head=True, item_id_input=True, item_head_recent=True).eval()
    recent.load_state_dict(plain.state_dict(), strict=False)
    batch = batch_of(ctx, "valid", size=8)
    # started at zero, the map leaves the plain head's scores
    targets = batch.target[:, None]
    assert torch.equal(recent.score_items(batch, targets), plain.score_items(batch, targets))
    # it is trained (through the item loss: the SID path does not read it)
    recent.train()
    recent.calculate_loss(batch)["loss"].backward()
    assert float(recent.recent_query.weight.grad.abs().sum()) > 0
    with torch.no_grad():
        torch.nn.init.normal_(recent.recent_query.weight)
    recent.eval()
    memory, pad = recent.encode(batch)
    first = recent.first_output(memory, pad)
    changed = memory.clone()
    changed[:, -recent.depth:] += 1.0                    # the most recent item's tokens
    older = memory.clone()
    older[:, : -recent.depth] += 1.0                     # every earlier position
    base = recent.item_log_probs(first, memory)
    assert not torch.allclose(recent.item_log_probs(first, changed), base)
    assert torch.allclose(recent.item_log_probs(first, older), base)
    # ranking and exhaustive scoring agree with the new query
    wide = build(ctx, item_head=True, item_id_input=True, item_head_recent=True, beam_size=ctx.num_items).eval()
    wide.load_state_dict(recent.state_dict())
    items, scores = wide.rank(batch, k=5)
    assert torch.allclose(scores, wide.score_items(batch, items), atol=1e-4)


def test_cosine_item_head_scores_by_direction_with_a_learnt_scale(ctx):
    with pytest.raises(PrismrecError, match="item_head_cosine"):
        build(ctx, item_head_cosine=True)
    model = build(ctx, item_head=True, item_id_input=True, item_head_cosine=True).eval()
    assert build(ctx, item_head=True).item_log_scale is None
    batch = batch_of(ctx, "valid", size=8)
    memory, pad = model.encode(batch)
    first = model.first_output(memory, pad)
    base = model.item_log_probs(first, memory)
    # an item's score is s * cos(query, vector) + bias: lengthening its vector (what a frequent
    # target's gradients do to a dot-product head) or the query changes nothing
    with torch.no_grad():
        tokens = model.token_emb(model.item_tokens[3]).mean(0)      # vector = tokens + C * item_emb
        model.item_emb.weight[3] = 5.0 * model.item_emb.weight[3] + 4.0 * tokens / model.cfg.item_emb_scale
    assert torch.allclose(model.item_log_probs(first, memory), base, atol=1e-5)
    assert torch.allclose(model.item_log_probs(3.0 * first, memory), base, atol=1e-5)
    # hand-computed: log-softmax of s * cos + bias
    with torch.no_grad():
        model.item_bias.normal_()
    vectors = model.token_emb(model.item_tokens).mean(1) + model.cfg.item_emb_scale * model.item_emb.weight
    cosine = F.cosine_similarity(first[:, None], vectors[None], dim=-1)
    expected = (model.item_log_scale.exp() * cosine + model.item_bias).log_softmax(-1)
    assert torch.allclose(model.item_log_probs(first, memory), expected, atol=1e-4)
    # the scale is learnt through the item loss; ranking agrees with exhaustive scoring
    model.train()
    model.calculate_loss(batch_of(ctx))["loss"].backward()
    assert model.item_log_scale.grad is not None and float(model.item_log_scale.grad) != 0
    wide = build(ctx, item_head=True, item_id_input=True, item_head_cosine=True, beam_size=ctx.num_items).eval()
    wide.load_state_dict(model.state_dict())
    items, scores = wide.rank(batch, k=5)
    assert torch.allclose(scores, wide.score_items(batch, items), atol=1e-4)


def test_item_vectors_are_kept_for_ranking_and_rebuilt_when_a_weight_changes(ctx):
    model = trained_item_head(ctx)

    def fresh() -> torch.Tensor:
        return model.token_emb(model.item_tokens).mean(1) + model.cfg.item_emb_scale * model.item_emb.weight

    with torch.no_grad():
        first = model.item_vectors()
        assert model.item_vectors() is first                      # kept between rankings
        assert torch.equal(first, fresh())
    # an optimizer step changes the weights in place: the next ranking sees the new vectors
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    model.train()
    model.calculate_loss(batch_of(ctx))["loss"].backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        after = model.item_vectors()
        assert after is not first and torch.equal(after, fresh()) and not torch.equal(after, first)
        model.load_state_dict({k: v.clone() for k, v in build(ctx, item_head=True, item_id_input=True, seed=3)
                               .state_dict().items()})
        assert torch.equal(model.item_vectors(), fresh())          # loaded weights: rebuilt
        # a new parameter object (not an in-place change) is noticed too
        model.item_emb.weight = torch.nn.Parameter(model.item_emb.weight + 1.0)
        assert torch.equal(model.item_vectors(), fresh())
    # with autograd on (training) the vectors are built each time, on the graph
    assert model.item_vectors().requires_grad


def test_gate_noise_and_dropout_only_in_training(ctx):
    model = build(ctx, dropout=0.0)
    batch = batch_of(ctx)
    model.train()
    torch.manual_seed(1)
    a = model.calculate_loss(batch)["loss"]
    b = model.calculate_loss(batch)["loss"]
    assert not torch.allclose(a, b)       # noisy gating: different routing draws
    model.eval()
    assert torch.equal(model.calculate_loss(batch)["loss"], model.calculate_loss(batch)["loss"])


def test_bf16_autocast(ctx):
    model = build(ctx).eval()
    batch = batch_of(ctx)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.calculate_loss(batch)["loss"]
        items, scores = model.rank(batch, 5)
    assert torch.isfinite(loss)
    assert_valid_ranking(items, scores, ctx.num_items)


def test_from_context_errors_are_user_facing(ctx):
    with pytest.raises(PrismrecError, match="tokenize"):
        IntegratedSemanticRecommender.from_context(replace(ctx, sids=None), TINY)
    with pytest.raises(PrismrecError, match="features"):
        IntegratedSemanticRecommender.from_context(replace(ctx, features=None), TINY)
    short = ItemFeatures(ctx.features.content[:-1], ctx.features.collab[:-1], [])
    with pytest.raises(PrismrecError, match="content.npy"):
        IntegratedSemanticRecommender.from_context(replace(ctx, features=short), TINY)
    # without DSI the features are not needed
    IntegratedSemanticRecommender.from_context(replace(ctx, features=None), replace(TINY, use_dsi=False))


def test_learns_the_synthetic_next_item_structure(ctx, one_thread):
    """A few epochs on the synthetic walks: the beam-searched top-10 finds most validation targets
    (random or most-popular guessing finds about 10/60 of them)."""
    model = build(ctx, beam_size=10)
    train, valid = ctx.data.examples("train"), ctx.data.examples("valid")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    order = np.random.default_rng(0).permutation(np.tile(np.arange(len(train)), 5))
    model.train()
    for start in range(0, len(order), 64):
        loss = model.calculate_loss(Batch.from_examples(train, order[start:start + 64], "cpu"))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    batch = Batch.from_examples(valid, np.arange(len(valid)), "cpu")
    items, _ = model.rank(batch, 10)
    recall = float((items == batch.target[:, None]).any(1).float().mean())
    assert recall > 0.4
