"""The Purified Semantic Quantizer (paper 3.3, SPEC section 4), in one file.

    e_collab --TrustGate--> g (ACD, Eq. 2-4) --> e~_collab = g * e_collab
    z   = Enc(e_cont || e~_collab)                                   (Eq. 5)
    c_l = argmin_k ||r_l - C_l[k]||,  r_1 = z,  r_{l+1} = r_l - C_l[c_l]   (residual quantization)
    z_q = sum_l C_l[c_l]; decoders reconstruct e_cont and e~_collab from z_q (DHR, Eq. 8)
    HSA (Eq. 6-7): tag anchors p_l vs soft prototypes over C_l + per-layer tag classifiers

TIGER mode is the same code with the content embedding only and none of ACD/HSA/DHR (a
plain RQ-VAE with one decoder); the ablations switch off exactly one module each.

Codebooks are *parameters* that two things move. (1) The paper's EMA update, applied to
the parameters after each optimizer step (ResidualQuantizer.ema_step: each used code moves
1 - decay of the way to its batch residual mean); with ema_decay = 0 the VQ-VAE codebook
loss ||sg[r_l] - C_l[c_l]||^2 does this job instead. (2) Gradients of the HSA terms (and of
the optional balance term) through the optimizer. A pure EMA buffer would receive no
gradient, so HSA could not shape it: the reference code's flaw that SPEC section 4
forbids. Dead codes are re-seeded from current residuals; k-means initialises the codes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from prismrec.tokenizer.config import TokenizerConfig


def mlp(dims: list[int], dropout: float) -> nn.Sequential:
    """Linear layers with LayerNorm/ReLU/Dropout between them (none after the last)."""
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers += [nn.LayerNorm(dims[i + 1]), nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


def squared_distances(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """(B, K) squared Euclidean distances between rows of x (B, d) and codes (K, d)."""
    return x.pow(2).sum(1, keepdim=True) - 2 * x @ codebook.T + codebook.pow(2).sum(1)[None, :]


def balanced_assignment(dist: torch.Tensor, epsilon: float, iters: int) -> torch.Tensor:
    """Codes (B,) of a Sinkhorn-balanced assignment of B points to K codes: the entropic optimal
    transport plan that gives every code the same share of the points (as in SwAV / balanced
    k-means), rounded per point to its heaviest code. ``epsilon`` is relative to the median
    distance, so it is scale-free; smaller = closer to a hard balanced assignment."""
    logits = -dist / (epsilon * dist.median().clamp_min(1e-12))
    n, k = dist.shape
    log_row = logits.new_zeros(n, 1)
    for _ in range(iters):  # alternate: every code gets mass 1/K, every point mass 1/B (log domain)
        log_col = -torch.logsumexp(logits + log_row, 0, keepdim=True) - math.log(k)
        log_row = -torch.logsumexp(logits + log_col, 1, keepdim=True) - math.log(n)
    return (logits + log_col).argmax(1)


# ----------------------------------------------------------------------------- ACD (Eq. 2-4)
class TrustGate(nn.Module):
    """Element-wise trust gate g = sigmoid(MLP(e_collab)) in (0, 1)^d_collab."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, collab: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(collab))


def acd_losses(gate: torch.Tensor, popularity: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 4: (mean gate - popularity)^2 and ReLU(delta - Var(gate)), averaged over items."""
    popularity_term = (gate.mean(1) - popularity).pow(2).mean()
    variance_term = F.relu(margin - gate.var(1, unbiased=False)).mean()
    return popularity_term, variance_term


# ----------------------------------------------------------------------------- residual quantization
class ResidualQuantizer(nn.Module):
    def __init__(self, num_layers: int, codebook_size: int, dim: int):
        super().__init__()
        self.num_layers, self.codebook_size = num_layers, codebook_size
        self.codebooks = nn.Parameter(torch.randn(num_layers, codebook_size, dim) * 0.01)
        # codes hit since the last revival, and the last training batch's residuals (revival seeds)
        self.register_buffer("usage", torch.zeros(num_layers, codebook_size))
        self.last_residuals: torch.Tensor | None = None
        self.last_codes: torch.Tensor | None = None

    @torch.no_grad()
    def kmeans_init(self, z: torch.Tensor, seed: int) -> None:
        """Per layer k-means on the residuals of a sample of latents (fewer points than codes:
        codes are drawn from the points plus small noise)."""
        from sklearn.cluster import KMeans

        gen = torch.Generator().manual_seed(seed)
        residual = z.detach().float().cpu()
        for layer in range(self.num_layers):
            if len(residual) >= self.codebook_size:
                km = KMeans(self.codebook_size, n_init=1, max_iter=50, random_state=seed + layer)
                centres = torch.as_tensor(km.fit(residual.numpy()).cluster_centers_, dtype=torch.float32)
            else:
                pick = torch.randint(len(residual), (self.codebook_size,), generator=gen)
                centres = residual[pick] + 1e-3 * residual.std() * torch.randn(
                    self.codebook_size, residual.shape[1], generator=gen)
            self.codebooks.data[layer] = centres.to(self.codebooks.device)
            residual = residual - centres[squared_distances(residual, centres).argmin(1)]

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Quantize z (B, d). Returns codes (B, L), codewords q (B, L, d; gradient to the
        codebooks) and residuals r (B, L, d; gradient to the encoder: r_l = z - sg[sum_{i<l} q_i],
        so every layer's residual carries gradient into z)."""
        codes, codewords, residuals = [], [], []
        residual = z
        for layer in range(self.num_layers):
            book = self.codebooks[layer]
            code = squared_distances(residual.detach(), book.detach()).argmin(1)
            q = book[code]
            codes.append(code)
            codewords.append(q)
            residuals.append(residual)
            residual = residual - q.detach()
        out = {"codes": torch.stack(codes, 1), "q": torch.stack(codewords, 1), "r": torch.stack(residuals, 1)}
        if self.training:
            with torch.no_grad():
                for layer in range(self.num_layers):
                    self.usage[layer] += torch.bincount(out["codes"][:, layer], minlength=self.codebook_size)
                self.last_residuals = out["r"].detach()
                self.last_codes = out["codes"]
        return out

    @torch.no_grad()
    def ema_step(self, decay: float) -> None:
        """Move every code used by the last training batch a fraction (1 - decay) of the way to
        the mean of its residuals: the paper's EMA update, applied to the codebook parameters
        themselves (after the optimizer step), so that gradient updates from HSA persist and
        are not overwritten by a separate running mean."""
        if self.last_residuals is None or self.last_codes is None:
            return
        for layer in range(self.num_layers):
            codes, residual = self.last_codes[:, layer], self.last_residuals[:, layer]
            counts = torch.bincount(codes, minlength=self.codebook_size).to(residual.dtype)
            sums = torch.zeros_like(self.codebooks[layer]).index_add_(0, codes, residual)
            used = counts > 0
            means = sums[used] / counts[used, None]
            self.codebooks.data[layer, used] = decay * self.codebooks.data[layer, used] + (1 - decay) * means

    @torch.no_grad()
    def balanced_refit(self, z: torch.Tensor, iters: int, epsilon: float, sinkhorn_iters: int = 50) -> None:
        """Refit every layer's codebook on the latents z (N, d) of all items by balanced k-means,
        layer by layer on the residuals of the refitted layers above: assign the points to the
        codes with balanced_assignment, move each code to the mean of its points, repeat.
        Why: trained codebooks leave layer 1 unevenly used (some codes hold many items) and the
        crowded layer-1 codes drive the prefix collisions; balanced centroids split crowded
        regions and spread the nearest-code assignment. The SIDs are read off afterwards as
        plain nearest codes, so they stay consistent with the saved codebooks."""
        residual = z.detach().float()
        for layer in range(self.num_layers):
            book = self.codebooks.data[layer].clone()
            for _ in range(iters):
                codes = balanced_assignment(squared_distances(residual, book), epsilon, sinkhorn_iters)
                counts = torch.bincount(codes, minlength=self.codebook_size).to(residual.dtype)
                sums = torch.zeros_like(book).index_add_(0, codes, residual)
                used = counts > 0
                book[used] = sums[used] / counts[used, None]
            self.codebooks.data[layer] = book
            residual = residual - book[squared_distances(residual, book).argmin(1)]

    @torch.no_grad()
    def revive_dead_codes(self, generator: torch.Generator) -> int:
        """Re-seed every code unused since the last call with a random current residual of its
        layer (plus small noise), so all K codes stay in play. Returns how many were revived."""
        revived = 0
        if self.last_residuals is not None:
            bank = self.last_residuals
            for layer in range(self.num_layers):
                dead = torch.nonzero(self.usage[layer] == 0).flatten()
                if len(dead) == 0:
                    continue
                pick = torch.randint(len(bank), (len(dead),), generator=generator).to(bank.device)
                seeds = bank[pick, layer]
                noise = torch.randn(seeds.shape, generator=generator).to(bank.device) * 0.01 * seeds.std()
                self.codebooks.data[layer, dead] = seeds + noise
                revived += len(dead)
        self.usage.zero_()
        return revived


# ----------------------------------------------------------------------------- the quantizer
class PurifiedSemanticQuantizer(nn.Module):
    def __init__(self, cfg: TokenizerConfig, content_dim: int, collab_dim: int,
                 tag_tables: list[torch.Tensor] | None = None):
        """``tag_tables[l]`` (V_l + 1, d_text): encoder embedding of each level-l tag, row 0 = PAD.
        HSA needs them; without tags (None or empty) HSA is off."""
        super().__init__()
        self.cfg = cfg
        tiger = cfg.mode == "tiger"
        self.use_collab = not tiger
        self.use_acd = cfg.use_acd and not tiger
        self.use_dhr = cfg.use_dhr and not tiger
        levels = min(len(tag_tables or []), cfg.num_layers)
        self.use_hsa = cfg.use_hsa and not tiger and levels > 0
        self.content_dim, self.collab_dim = content_dim, collab_dim
        in_dim = content_dim + (collab_dim if self.use_collab else 0)

        # per-dimension standardisation of the inputs (set from the catalogue by set_input_stats):
        # unit-norm sentence embeddings have tiny per-dimension variance, and without it the
        # reconstruction terms are too weak to stop the encoder from collapsing z onto a few codes
        for name, dim in (("content", content_dim), ("collab", collab_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))
        self.gate = TrustGate(collab_dim, cfg.gate_hidden, cfg.gate_dropout) if self.use_acd else None
        # running per-dimension mean of the gate over items (see purify)
        self.register_buffer("gate_mean", torch.ones(collab_dim))
        self.encoder = mlp([in_dim, *cfg.hidden_dims, cfg.latent_dim], cfg.dropout)
        self.quantizer = ResidualQuantizer(cfg.num_layers, cfg.codebook_size, cfg.latent_dim)
        decoder_dims = [cfg.latent_dim, *reversed(cfg.hidden_dims)]
        if self.use_dhr:  # DHR: one decoder per signal, so the 64-d collab part is not drowned out
            self.content_decoder = mlp([*decoder_dims, content_dim], cfg.dropout)
            self.collab_decoder = mlp([*decoder_dims, collab_dim], cfg.dropout)
        else:             # plain RQ-VAE: one decoder for the whole encoder input
            self.decoder = mlp([*decoder_dims, in_dim], cfg.dropout)
        if self.use_hsa:
            self.hsa_levels = levels
            for level in range(levels):
                self.register_buffer(f"tag_table_{level}", tag_tables[level].float())
            tag_dim = tag_tables[0].shape[1]
            self.anchor_projections = nn.ModuleList(nn.Linear(tag_dim, cfg.latent_dim) for _ in range(levels))
            self.tag_classifiers = nn.ModuleList(
                nn.Linear((level + 1) * cfg.latent_dim, tag_tables[level].shape[0]) for level in range(levels))

    # ------------------------------------------------------------------ encoder side
    @torch.no_grad()
    def set_input_stats(self, content: torch.Tensor, collab: torch.Tensor) -> None:
        seen = self.collab_input(collab)
        self.content_mean.copy_(content.mean(0))
        self.content_std.copy_(content.std(0).clamp_min(1e-6))
        self.collab_mean.copy_(seen.mean(0))
        # equal total variance for both signals: 64 unit-variance collab dimensions against 384
        # content ones would leave the collab part a small share of the encoder input, and the
        # long-tail near-duplicates that only collab tells apart would share SIDs
        block = math.sqrt(self.content_dim / self.collab_dim) if self.cfg.balance_signals else 1.0
        self.collab_std.copy_(seen.std(0).clamp_min(1e-6) / block)
        if self.gate is not None:  # start the running gate mean at the catalogue's (no dropout)
            was_training = self.gate.training
            self.gate.eval()
            self.gate_mean.copy_(self.gate(self.standardise(content, collab)[1]).mean(0))
            self.gate.train(was_training)

    def collab_input(self, collab: torch.Tensor) -> torch.Tensor:
        """The collaborative vector as the encoder sees it, before standardising."""
        return F.normalize(collab, dim=1) if self.cfg.collab_direction else collab

    def standardise(self, content: torch.Tensor, collab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        collab = self.collab_input(collab)
        return (content - self.content_mean) / self.content_std, (collab - self.collab_mean) / self.collab_std

    def purify(self, content: torch.Tensor, collab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Encoder input, the gate (None without ACD) and the collab signal the encoder sees
        (inputs already standardised).

        The gated signal g * e_collab (Eq. 3) is divided by the gate's mean over items, per
        dimension (the batch mean in training, a running mean of it in eval). Why: popularity
        supervision pulls the mean gate to the mean popularity (~0.37 on Beauty), which shrinks
        the whole collab part ~3x against the content part; near-duplicate long-tail items then
        differ too little in z and share SIDs (Beauty layer-2 prefix collisions 22.4% -> 16.6%
        with the rescale). A per-dimension constant is absorbed by the encoder's first linear
        layer, so the model family is Eq. 3's; only the conditioning changes, and the gate
        keeps its meaning: how much an item's collab signal is trusted relative to others'."""
        if not self.use_collab:
            return content, None, None
        if not self.use_acd:
            return torch.cat([content, collab], dim=1), None, collab
        gate = self.gate(collab)
        if self.training:
            scale = gate.mean(0).detach()
            with torch.no_grad():
                self.gate_mean.lerp_(scale, 0.1)
        else:
            scale = self.gate_mean
        purified = gate * collab / scale.clamp_min(1e-3)
        return torch.cat([content, purified], dim=1), gate, purified

    def encode(self, content: torch.Tensor, collab: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.purify(*self.standardise(content, collab))[0])

    # ------------------------------------------------------------------ losses
    def forward(self, content: torch.Tensor, collab: torch.Tensor, popularity: torch.Tensor,
                tags: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every loss term of Eq. 9 (plus the codebook loss of learned codebooks) and ``total``.
        ``tags`` (B, L) int64 per-level tag index, 0 = PAD (ignored)."""
        cfg = self.cfg
        content, collab = self.standardise(content, collab)
        x, gate, purified = self.purify(content, collab)
        z = self.encoder(x)
        quant = self.quantizer(z)
        q, r = quant["q"], quant["r"]
        z_q = q.sum(1)
        # straight-through: the decoders see z_q, their gradient lands on z unchanged
        z_st = z + (z_q - z).detach()

        losses: dict[str, torch.Tensor] = {}
        # VQ terms, per layer: commitment moves the encoder (through every residual r_l),
        # the codebook term moves the codebooks (it replaces the paper's EMA update)
        # (squared errors are averaged per dimension everywhere, as reconstruction is: summed
        # over the 32 latent dimensions the commitment outweighs reconstruction and the
        # encoder collapses items onto a few codewords)
        losses["commit"] = (r - q.detach()).pow(2).mean(-1).sum(-1).mean()
        losses["codebook"] = (r.detach() - q).pow(2).mean(-1).sum(-1).mean()

        # reconstruction errors are per-dimension means, so each DHR head weighs the same
        # whatever its width (384-d content vs 64-d collab); the single decoder of the
        # ablation / TIGER averages over the whole concatenated input instead
        if self.use_dhr:
            losses["recon_content"] = (self.content_decoder(z_st) - content).pow(2).mean()
            # target detached: the gate is trained by ACD and by what the encoder needs, not
            # pushed to zero to make the collab reconstruction trivially easy
            losses["recon_collab"] = (self.collab_decoder(z_st) - purified.detach()).pow(2).mean()
        else:
            losses["recon"] = (self.decoder(z_st) - x.detach()).pow(2).mean()

        if cfg.balance_weight > 0:
            losses["balance"] = self.balance_loss(r)

        if gate is not None:
            losses["acd_pop"], losses["acd_var"] = acd_losses(gate, popularity, cfg.acd_margin)

        if self.use_hsa and tags is not None:
            losses["hsa_anchor"], losses["hsa_cls"] = self.hsa_losses(q, r, tags)

        total = losses.get("recon", 0) + losses.get("recon_content", 0) + losses.get("recon_collab", 0)
        # with EMA codebooks (ema_decay > 0) the EMA step does the codebook term's job
        total = total + cfg.beta * losses["commit"] + (losses["codebook"] if cfg.ema_decay <= 0 else 0)
        if "acd_pop" in losses:
            total = total + cfg.lambda_acd * (losses["acd_pop"] + losses["acd_var"])
        if "hsa_anchor" in losses:
            total = total + cfg.lambda_hsa * (losses["hsa_anchor"] + losses["hsa_cls"])
        if "balance" in losses:
            total = total + cfg.balance_weight * losses["balance"]
        losses["total"] = total
        losses["codes"] = quant["codes"]
        return losses

    def balance_loss(self, r: torch.Tensor) -> torch.Tensor:
        """Not in the paper (off by default; tokenizer.balance_weight): log K - entropy of the
        batch's mean soft code assignment, per layer. It spreads items over the codes (high
        perplexity) by moving both the residuals and the codebooks; temperatures are relative
        to the batch's mean distance to the nearest code, so the term is scale-free."""
        loss = r.new_zeros(())
        for layer in range(self.quantizer.num_layers):
            dist = squared_distances(r[:, layer], self.quantizer.codebooks[layer])
            scale = dist.detach().min(1).values.mean().clamp_min(1e-8)
            usage = torch.softmax(-dist / scale, dim=1).mean(0)
            loss = loss + math.log(self.quantizer.codebook_size) + (usage * usage.clamp_min(1e-12).log()).sum()
        return loss

    def hsa_losses(self, q: torch.Tensor, r: torch.Tensor, tags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 6-7, summed over levels, each averaged over the items with a (non-PAD) tag.

        Anchor term: p_l = W_l t_l against the soft prototype sum_k alpha_k C_l[k]; its
        gradient reaches both the projection W_l and the codebook C_l.
        Classifier term: CE of a linear classifier over the codewords [q_1 || ... || q_l];
        its gradient reaches the classifiers and the codebooks (not the encoder: routed into
        the encoder it clustered the latents by category and cost code balance on Beauty).
        """
        anchor_loss = q.new_zeros(())
        cls_loss = q.new_zeros(())
        mixed = q
        for level in range(self.hsa_levels):
            tag = tags[:, level]
            has_tag = tag > 0
            if not bool(has_tag.any()):
                continue
            book = self.quantizer.codebooks[level]
            anchor = self.anchor_projections[level](getattr(self, f"tag_table_{level}")[tag[has_tag]])
            alpha = torch.softmax(-squared_distances(anchor, book) / self.cfg.tau_hsa, dim=1)
            prototype = alpha @ book
            anchor_loss = anchor_loss + (anchor - prototype).pow(2).mean()
            h = mixed[has_tag, : level + 1].flatten(1)
            cls_loss = cls_loss + F.cross_entropy(self.tag_classifiers[level](h), tag[has_tag])
        return anchor_loss, cls_loss

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def tokenize(self, content: torch.Tensor, collab: torch.Tensor, batch_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes (N, L) int64, latents z (N, d_cb)) of all items, in eval mode."""
        was_training = self.training
        self.eval()
        codes, latents = [], []
        for start in range(0, len(content), batch_size):
            z = self.encode(content[start:start + batch_size], collab[start:start + batch_size])
            codes.append(self.quantizer(z)["codes"])
            latents.append(z)
        self.train(was_training)
        return torch.cat(codes), torch.cat(latents)
