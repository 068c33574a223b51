"""Configuration of the train / evaluate stages (SPEC sections 5-6)."""

from dataclasses import dataclass, field


@dataclass
class RecommenderConfig:
    model: str = "prism"           # prism | tiger | sasrec | pop
    use_dsi: bool = True
    use_ssa: bool = True
    use_ats: bool = True
    # backbone (paper: 4+4 layers, d_model 128, FFN 1024; 4 heads because 6 does not divide 128)
    d_model: int = 128
    num_heads: int = 4
    encoder_layers: int = 4
    decoder_layers: int = 4
    d_ff: int = 1024
    # residual, attention, feed-forward and input dropout of the backbone. On Beauty's CPU protocol
    # 0.2 / 0.3 lower recall, the medium and long-tail thirds most, though they lower the item
    # head's validation loss (benchmarks/results/beauty-cpu-dropout-2026-11-28.md)
    dropout: float = 0.1
    # score each depth's tokens with their input embeddings (T5-style weight tying, logits scaled
    # by d_model^-0.5) instead of separate output heads: a history item's tokens and the tokens
    # it predicts share one vector. Not in the paper; off by default
    tie_heads: bool = False
    # tokenizer stage whose SIDs a generative model reads, e.g. tokenizer-prism-no-acd-dir;
    # "" = the model's own (prism: tokenizer, tiger: tokenizer-tiger)
    sid_stage: str = ""
    # each history item also carries a learned embedding of its own item id, added to its SID
    # tokens: the encoder tells apart items that share SID prefixes (SASRec-CE gets most of its
    # lead on Beauty from the most recent item, benchmarks/results/recent-item-value-*). Starts at
    # zero, so an item never trained keeps the paper's representation. Not in the paper; off by default
    item_id_input: bool = False
    # initial standard deviation of those item-id embeddings; 0 = zeros (the paper's representation
    # at the start). With item_head they are also the item's own share of its output vector: started
    # at zero they stay small against the SID token embeddings (init N(0, 1)), so items that share
    # SID tokens stay hard to tell apart (benchmarks/results/beauty-cpu-item-emb-std-*)
    item_emb_std: float = 0.0
    # the item-id embeddings enter the model multiplied by this factor (input and item head). Under
    # Adam a parameter moves about lr per step whatever its gradient's size, so the factor is the
    # item ids' own learning-rate multiplier: at 1 an item's row stays small against the SID token
    # embeddings (norm ~11) it is added to, at sqrt(d_model) it can catch up within an epoch, as
    # SASRec's input embeddings (scaled by sqrt(dim)) do. On Beauty sqrt(d_model) = 11.3 lifts test
    # R@10 / N@10 by 13% / 20% with the item head (benchmarks/results/beauty-cpu-item-emb-scale-*).
    # Not in the paper; 1 by default (the paper has no item ids)
    item_emb_scale: float = 1.0
    # share of history positions whose item-id embedding is dropped in training (whole rows, the
    # kept ones scaled by 1 / (1 - p)): those positions are read from their SID tokens alone, as
    # items whose id rows are barely trained (rare items) always are. A regulariser for large
    # item_emb_scale, which over-fits on Beauty (C = 32 peaks at epoch 8). 0 = off, the default
    item_id_dropout: float = 0.0
    # item-level output head: the decoder's first output o_0 also scores every item against the
    # item's output vector (the mean of its SID token embeddings, plus its item-id embedding with
    # item_id_input), trained with a full-softmax cross-entropy beside Eq. 17. Ranking re-scores
    # the beam's items and the head's own top items by log p_SID + item_score_weight * log p_item:
    # the SID path carries the semantic structure (long-tail items share their siblings' tokens),
    # the item path tells apart siblings, which is where SASRec-CE wins on Beauty. Not in the
    # paper; off by default. item_score_weight only changes ranking (validation during training,
    # which picks the checkpoint, ranks with the weight set then; benchmarks/item_head_weight.py)
    item_head: bool = False
    # the item head's query also reads the most recent history item directly: o_0 plus a linear map
    # (started at zero) of the encoder outputs at that item's SID tokens, as SASRec's query is the
    # hidden state at the last position (SASRec-CE's lead on Beauty is the most recent item,
    # benchmarks/results/recent-item-value-*). Needs item_head. Not in the paper; off by default
    item_head_recent: bool = False
    # the item head scores by cosine: s * cos(query, item vector) + bias, s learnable (from
    # isr.ITEM_COSINE_SCALE_INIT), instead of a dot product. A dot product lets an item's score grow with
    # its vector's norm, which only frequent targets' gradients build up; a rare item then ranks by
    # its direction alone (shaped by the SID tokens it shares), and the bias is where popularity can
    # go. Needs item_head. Not in the paper; off by default: on Beauty it matched the dot head's R@10
    # and lowered the tail thirds (benchmarks/results/beauty-cpu-item-cos-2026-11-28.md)
    item_head_cosine: bool = False
    item_score_weight: float = 1.0
    # the weights validation tries, from one candidate pass: it keeps the one with the best NDCG@10
    # (stored with the best checkpoint, which is selected on that score); evaluation picks it on the
    # validation split again and ranks the test split with it, serving ranks with the checkpoint's.
    # [] = always item_score_weight. On Beauty the pick is 2-4 (benchmarks/results/item-head-weight-*)
    item_score_weights: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0, 4.0, 8.0])
    # DSI
    num_experts: int = 3
    top_k_experts: int = 2
    d_moe: int = 256
    d_content_proj: int = 64
    d_collab_proj: int = 32
    dsi_eta_init: float = 0.1      # initial weight of the DSI residual (Eq. 14; learnable)
    # SSA / ATS
    gamma: float = 5e-4
    tau_min: float = 0.5
    tau_max: float = 1.0
    ats_alpha: float = 0.5
    # decoding
    beam_size: int = 30
    # SASRec baseline
    sasrec_dim: int = 64
    sasrec_blocks: int = 2
    sasrec_heads: int = 1
    sasrec_dropout: float = 0.5
    sasrec_lr: float = 1e-3
    sasrec_schedule: str = "constant"  # constant | warmup-cosine (the generative models use warmup-cosine)
    # training
    lr: float = 5e-4
    weight_decay: float = 0.0      # decoupled (AdamW); 0 = plain Adam
    # linear warmup over a fixed number of steps, then cosine decay over `epochs`; a fixed count
    # (not a share of all epochs) so that early-stopped and time-budgeted runs are not all warmup
    warmup_steps: int = 500
    batch_size: int = 128
    eval_batch_size: int = 512
    epochs: int = 200
    patience: int = 10
    eval_every: int = 1
    max_minutes: float = 0.0       # 0 = no time budget
    # > 0: the cosine decay runs over this many minutes of training (wall time, validation
    # included, carried across resumes) or over `epochs`, whichever ends first, and training
    # ends when it reaches 0: a time-bounded run (CPU) still gets a fully decayed learning rate
    schedule_minutes: float = 0.0
    # bf16 autocast on CUDA; off by default: slower than float32 for models this small
    # (see prismrec.device.mixed_precision)
    amp: bool = False
    # bf16 autocast on CPUs that compute it natively (AMX / AVX512-BF16); opt-in, see
    # prismrec.device.mixed_precision. Like `device`, it is not part of the training fingerprint
    amp_cpu: bool = False
    device: str = "auto"
    seed: int = 0
