"""Configuration of the tokenize stage (SPEC section 4)."""

from dataclasses import dataclass, field


@dataclass
class TokenizerConfig:
    mode: str = "prism"            # prism | tiger
    use_acd: bool = True
    use_hsa: bool = True
    use_dhr: bool = True
    num_layers: int = 3            # L
    codebook_size: int = 256       # K
    latent_dim: int = 32           # d_cb
    hidden_dims: list[int] = field(default_factory=lambda: [256, 128])  # reference: 512-256-128 (2.5x slower on CPU)
    dropout: float = 0.0           # reference 0.1; dropout makes training latents differ from the
                                   # eval latents the SIDs come from, which unbalanced the codes
    balance_signals: bool = True   # scale the standardised collab block by sqrt(d_content / d_collab) (psq.set_input_stats)
    # L2-normalise each item's collaborative embedding first: LightGCN norms grow with an item's
    # degree, so raw vectors put the long tail near the origin, in coarse codes of its own
    collab_direction: bool = False
    gate_hidden: int = 128         # ACD gate MLP 64-128-64
    gate_dropout: float = 0.2
    beta: float = 0.25             # commitment weight
    lambda_acd: float = 0.8        # lambda_1
    lambda_hsa: float = 0.2        # lambda_2
    tau_hsa: float = 0.15
    acd_margin: float = 0.01       # delta in Eq. 4
    balance_weight: float = 0.0    # code-balance entropy term (not in the paper; psq.balance_loss)
    codebook_lr_scale: float = 1.0 # learning rate of the codebooks relative to lr
    epochs: int = 60               # Beauty (12k items, batch 512): ~1,400 steps, a few minutes on 2 CPU cores
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_frac: float = 0.05      # linear warmup share of all steps, then cosine to 0
    grad_clip: float = 1.0
    ema_decay: float = 0.99        # EMA pull of the codes to their residual means (0 = codebook loss instead)
    kmeans_samples: int = 8192
    refit_iters: int = 10          # balanced k-means refit of the codebooks after training (prism mode; 0 = off)
    refit_epsilon: float = 0.05    # its Sinkhorn regularisation, relative to the median distance
    revive_every: int = 1          # epochs between dead-code revivals (0 = never)
    dedup_neighbourhood: int = 64  # free candidate SIDs considered per colliding item
    dedup_beam: int = 4            # alternative codes of layer L-1 searched for free SIDs (besides the own prefix)
    sinkhorn_epsilon: float = 0.05 # entropic regularisation, relative to the median candidate cost
    sinkhorn_iters: int = 200
    device: str = "auto"
    seed: int = 0
