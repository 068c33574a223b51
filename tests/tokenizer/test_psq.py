"""Gradient paths of every loss term of the Purified Semantic Quantizer (SPEC section 4), and
the module switches of the ablations / TIGER mode."""

from __future__ import annotations

import pytest
import torch

from prismrec.tokenizer.psq import PurifiedSemanticQuantizer
from tok_helpers import tiny_config

N, D_CONTENT, D_COLLAB, VOCAB = 64, 12, 64, [4, 6, 5]


def build(**overrides) -> tuple[PurifiedSemanticQuantizer, tuple]:
    torch.manual_seed(0)
    cfg = tiny_config(acd_margin=1.0, **overrides)  # margin above any variance: the hinge is active
    tables = [torch.cat([torch.zeros(1, D_CONTENT), torch.randn(v, D_CONTENT)]) for v in VOCAB]
    model = PurifiedSemanticQuantizer(cfg, D_CONTENT, D_COLLAB, tables)
    content, collab = torch.randn(N, D_CONTENT), torch.randn(N, D_COLLAB)
    popularity = torch.rand(N)
    tags = torch.stack([torch.randint(0, v + 1, (N,)) for v in VOCAB], 1)
    tags[0] = torch.tensor([1, 1, 1])  # at least one real tag per level
    model.eval()
    with torch.no_grad():
        model.quantizer.kmeans_init(model.encode(content, collab), seed=0)
    model.train()
    return model, (content, collab, popularity, tags)


def grad_norms(model: PurifiedSemanticQuantizer, term: str, batch: tuple) -> dict[str, float]:
    model.zero_grad(set_to_none=True)
    model(*batch)[term].backward()
    groups = {
        "encoder": model.encoder.parameters(),
        "codebooks": [model.quantizer.codebooks],
        "gate": model.gate.parameters() if model.gate is not None else [],
        "anchor_projections": model.anchor_projections.parameters() if model.use_hsa else [],
        "tag_classifiers": model.tag_classifiers.parameters() if model.use_hsa else [],
        "content_decoder": model.content_decoder.parameters() if model.use_dhr else [],
        "collab_decoder": model.collab_decoder.parameters() if model.use_dhr else [],
        "decoder": [] if model.use_dhr else model.decoder.parameters(),
    }
    return {name: sum(float(p.grad.norm()) for p in params if p.grad is not None) for name, params in groups.items()}


# term -> parameter groups it must move, and groups a stop-gradient must keep it away from
PATHS = {
    "commit": (["encoder", "gate"], ["codebooks"]),
    "codebook": (["codebooks"], ["encoder", "gate"]),
    "acd_pop": (["gate"], ["encoder", "codebooks"]),
    "acd_var": (["gate"], ["encoder", "codebooks"]),
    "hsa_anchor": (["codebooks", "anchor_projections"], ["encoder"]),
    "hsa_cls": (["tag_classifiers", "codebooks"], ["encoder"]),
    "recon_content": (["content_decoder", "encoder", "gate"], ["collab_decoder", "codebooks"]),
    "recon_collab": (["collab_decoder", "encoder"], ["content_decoder"]),
}


@pytest.mark.parametrize("term", sorted(PATHS))
def test_each_loss_term_reaches_the_parameters_it_trains(term):
    model, batch = build()
    norms = grad_norms(model, term, batch)
    must, must_not = PATHS[term]
    for group in must:
        assert norms[group] > 0, f"{term} does not reach {group}: {norms}"
    for group in must_not:
        assert norms[group] == 0, f"{term} leaks into {group}: {norms}"


def test_single_decoder_reconstruction_without_dhr_trains_decoder_and_encoder():
    model, batch = build(use_dhr=False)
    norms = grad_norms(model, "recon", batch)
    assert norms["decoder"] > 0 and norms["encoder"] > 0 and norms["gate"] > 0


def test_hsa_anchor_step_on_codebooks_lowers_the_anchor_loss():
    model, batch = build()
    before = model(*batch)["hsa_anchor"].item()
    opt = torch.optim.SGD([model.quantizer.codebooks], lr=0.05)
    for _ in range(5):
        opt.zero_grad()
        model(*batch)["hsa_anchor"].backward()
        opt.step()
    assert model(*batch)["hsa_anchor"].item() < before


@pytest.mark.parametrize("ema_decay", [0.99, 0.0])
def test_total_loss_uses_paper_weights(ema_decay):
    model, batch = build(ema_decay=ema_decay)
    model.eval()  # no dropout: two forwards agree
    out = model(*batch)
    cfg = model.cfg
    codebook_term = out["codebook"] if ema_decay == 0 else 0  # EMA replaces the codebook loss
    expected = (out["recon_content"] + out["recon_collab"] + cfg.beta * out["commit"] + codebook_term
                + cfg.lambda_acd * (out["acd_pop"] + out["acd_var"]) + cfg.lambda_hsa * (out["hsa_anchor"] + out["hsa_cls"]))
    assert torch.allclose(out["total"], expected)


def test_pad_tags_are_ignored_and_all_pad_batch_gives_zero_hsa():
    model, (content, collab, popularity, tags) = build()
    out = model(content, collab, popularity, torch.zeros_like(tags))
    assert float(out["hsa_anchor"]) == 0.0 and float(out["hsa_cls"]) == 0.0
    assert torch.isfinite(out["total"])


@pytest.mark.parametrize("overrides,present,absent", [
    ({}, ["gate", "anchor_projections", "content_decoder", "collab_decoder"], ["decoder"]),
    ({"use_acd": False}, ["anchor_projections", "content_decoder"], ["acd_pop"]),
    ({"use_hsa": False}, ["gate", "content_decoder"], ["anchor_projections", "hsa_anchor"]),
    ({"use_dhr": False}, ["gate", "anchor_projections", "decoder"], ["content_decoder", "recon_content"]),
    ({"mode": "tiger"}, ["decoder"], ["anchor_projections", "content_decoder", "acd_pop", "hsa_cls"]),
])
def test_ablations_remove_exactly_their_module(overrides, present, absent):
    model, batch = build(**overrides)
    out = model(*batch)
    names = {n.split(".")[0] for n, _ in model.named_parameters()} | set(out)
    for name in present:
        assert name in names
    for name in absent:
        assert name not in names
    if overrides.get("use_acd") is False:
        assert model.gate is None and model.use_collab
    if overrides.get("mode") == "tiger":
        assert model.encoder[0].in_features == D_CONTENT  # content only


def test_ema_step_pulls_used_codes_towards_their_residual_mean():
    model, batch = build()
    out = model(*batch)
    q = model.quantizer
    code = int(out["codes"][0, 0])
    members = out["codes"][:, 0] == code
    mean = q.last_residuals[members, 0].mean(0)
    before = q.codebooks[0, code].detach().clone()
    snapshot = q.codebooks.detach().clone()
    q.ema_step(0.9)
    assert torch.allclose(q.codebooks[0, code], 0.9 * before + 0.1 * mean, atol=1e-5)
    unused = torch.nonzero(torch.bincount(out["codes"][:, 0], minlength=8) == 0).flatten()
    if len(unused):  # codes nobody used do not move
        assert torch.equal(q.codebooks[0, unused].detach(), snapshot[0, unused])


def test_dead_codes_are_revived_from_current_residuals():
    model, batch = build()
    model(*batch)  # records usage and residuals
    dead = model.quantizer.usage[0] == 0
    model.quantizer.usage[0, :2] = 0
    dead[:2] = True
    before = model.quantizer.codebooks.detach().clone()
    revived = model.quantizer.revive_dead_codes(torch.Generator().manual_seed(0))
    after = model.quantizer.codebooks.detach()
    assert revived >= 2
    assert not torch.allclose(after[0, dead], before[0, dead])
    # each revived code sits next to one of the recorded layer-1 residuals
    residuals = model.quantizer.last_residuals[:, 0]
    assert torch.cdist(after[0, dead], residuals).min(1).values.max() < 0.5 * residuals.std() * 8 ** 0.5
    assert float(model.quantizer.usage.sum()) == 0


def test_tokenize_is_deterministic_and_matches_nearest_codes():
    model, (content, collab, _, _) = build()
    codes, z = model.tokenize(content, collab)
    codes2, _ = model.tokenize(content, collab)
    assert torch.equal(codes, codes2) and codes.shape == (N, 3)
    first = torch.cdist(z, model.quantizer.codebooks[0]).argmin(1)
    assert torch.equal(codes[:, 0], first)


def perplexity(codes: torch.Tensor, k: int) -> float:
    p = torch.bincount(codes, minlength=k).float() / len(codes)
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def test_balanced_assignment_gives_every_code_its_share():
    from prismrec.tokenizer.psq import balanced_assignment, squared_distances

    torch.manual_seed(0)
    points = torch.randn(400, 2) * torch.tensor([3.0, 0.2])   # elongated cloud
    codes = torch.randn(8, 2) * 0.1                           # all codes near the centre
    nearest = squared_distances(points, codes).argmin(1)
    balanced = balanced_assignment(squared_distances(points, codes), epsilon=0.05, iters=100)
    counts = torch.bincount(balanced, minlength=8)
    assert counts.min() >= 20 and counts.max() <= 90       # 50 each, up to the per-point rounding
    assert perplexity(balanced, 8) > perplexity(nearest, 8)


def test_balanced_refit_raises_layer1_perplexity_on_a_skewed_set():
    from prismrec.tokenizer.psq import ResidualQuantizer, squared_distances

    torch.manual_seed(0)
    # skewed: 90% of the points in one tight blob, the rest spread wide; codebook from k-means
    z = torch.cat([0.05 * torch.randn(900, 4), 3 * torch.randn(100, 4)])
    rq = ResidualQuantizer(num_layers=2, codebook_size=16, dim=4)
    rq.kmeans_init(z, seed=0)
    before = squared_distances(z, rq.codebooks[0]).argmin(1)
    rq.balanced_refit(z, iters=10, epsilon=0.05)
    after = squared_distances(z, rq.codebooks[0]).argmin(1)
    assert perplexity(after, 16) > perplexity(before, 16) + 2
    # layer 2 is fitted on the residuals of the refitted layer 1: it lowers their error
    residual = z - rq.codebooks[0][after]
    layer2 = rq.codebooks[1][squared_distances(residual, rq.codebooks[1]).argmin(1)]
    assert (residual - layer2).pow(2).sum(1).mean() < residual.pow(2).sum(1).mean()


def test_gated_collab_keeps_its_scale_and_the_gate_stays_relative_trust():
    """purify divides g * e_collab by the gate's mean over items: the collab part keeps the
    scale of the (standardised) input whatever the mean gate, and an item the gate trusts more
    than average keeps more of its signal than one it trusts less."""
    model, (content, collab, popularity, tags) = build()
    model.set_input_stats(content, collab)
    with torch.no_grad():  # a gate that trusts nobody much: mean ~0.1
        model.gate.net[-1].bias.fill_(-2.2)
    model.set_input_stats(content, collab)  # the running gate mean starts at the catalogue's
    model.eval()
    c, e = model.standardise(content, collab)
    _, gate, purified = model.purify(c, e)
    assert 0.05 < float(gate.detach().mean()) < 0.15
    ratio = purified / e
    assert float(ratio.detach().mean()) == pytest.approx(1.0, abs=0.05)  # scale kept on average
    assert torch.allclose(ratio, gate / model.gate_mean, atol=1e-5)      # ordering of trust kept
    model.train()
    before = model.gate_mean.clone()
    model.purify(c, e)   # training batches update the running mean, without gradient
    assert not model.gate_mean.requires_grad and torch.allclose(model.gate_mean, before, atol=0.02)


@pytest.mark.parametrize("balance", [True, False])
def test_content_and_collab_blocks_enter_with_equal_total_variance(balance):
    model, (content, collab, _, _) = build(balance_signals=balance)
    content, collab = content * 0.05 + 1.0, collab * 3.0   # raw scales far apart
    model.set_input_stats(content, collab)
    c, e = model.standardise(content, collab)
    content_var, collab_var = float(c.var(0).sum()), float(e.var(0).sum())
    assert content_var == pytest.approx(D_CONTENT, rel=1e-3)     # unit variance per content dimension
    expected = D_CONTENT if balance else D_COLLAB                  # balanced: same total as content
    assert collab_var == pytest.approx(expected, rel=1e-3)


def test_collab_direction_ignores_the_norm_that_grows_with_degree():
    """LightGCN norms grow with an item's degree; with ``collab_direction`` an item's
    encoder input depends on its collab vector's direction only."""
    model, (content, collab, _, _) = build(collab_direction=True)
    degree_scale = torch.linspace(0.2, 5.0, N)[:, None]   # long tail short, popular long
    model.set_input_stats(content, collab * degree_scale)
    model.eval()
    c1, e1 = model.standardise(content, collab * degree_scale)
    c2, e2 = model.standardise(content, collab)
    assert torch.allclose(e1, e2, atol=1e-5) and torch.equal(c1, c2)
    assert torch.allclose(model.encode(content, collab * degree_scale), model.encode(content, collab), atol=1e-5)
    plain, _ = build()
    plain.set_input_stats(content, collab * degree_scale)
    assert not torch.allclose(plain.standardise(content, collab * degree_scale)[1], plain.standardise(content, collab)[1])
