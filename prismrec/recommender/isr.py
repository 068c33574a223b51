"""Integrated Semantic Recommender (PRISM paper section 3.4, SPEC section 5).

An encoder-decoder Transformer reads a user's last items as Semantic-ID tokens
and generates the next item's SID token by token:

* input (Eq. 10): each history item contributes its T SID tokens; a token's
  embedding = token + sequence position (recency) + depth + time-interval bucket;
* DSI (Eq. 11-14): the token embedding is concatenated with depth-specific
  projections of the item's content and collaborative features and the token's
  fixed codebook vector q_l, routed through a noisy top-2-of-3 mixture of
  experts and added back with a learnable weight eta;
* decoder: BOS + the target's first T-1 tokens (teacher forcing); the output
  o_l at depth l scores the depth-l vocabulary; beam search decodes only each beam's
  newest position, against a cache of its earlier ones (``Decoder.step``);
* SSA (Eq. 15): o_l regresses the target's codebook vector q_l and classifies
  the target's ground-truth category tag at level l;
* ATS (Eq. 16-17): logits are divided by a temperature that falls with the
  trie branching factor of the prefix (training: the ground-truth prefix over
  the full vocabulary; generation: each beam's prefix, trie-constrained).

With ``use_dsi=use_ssa=use_ats=False`` and TIGER's 4-token SIDs this is the
TIGER baseline. Each switch removes its module entirely (no parameters, no compute).
"""

from __future__ import annotations

import math
import weakref
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from prismrec.errors import PrismrecError
from prismrec.recommender.base import Batch, ModelContext, SequentialRecommender
from prismrec.recommender.config import RecommenderConfig
from prismrec.recommender.dropout import Dropout
from prismrec.recommender.transformer import Decoder, Encoder
from prismrec.recommender.trie import SemanticIdTrie, beam_search, constrained_log_probs

# starting s of the cosine item head (RecommenderConfig.item_head_cosine): a target's score can then
# stand ~2s = 40 nats above the rest of a 12k-item catalog, and s is learnt from there
ITEM_COSINE_SCALE_INIT = 20.0


class DynamicSemanticIntegration(nn.Module):
    """DSI, Eq. 11-14: fuse continuous item features into each SID token embedding."""

    def __init__(self, depth: int, d_model: int, d_content: int, d_collab: int, d_cb: int, cfg: RecommenderConfig):
        super().__init__()
        # Eq. 11: one projector per SID depth, so each depth picks the granularity it needs;
        # content goes to a low dimension so it does not drown the sparse collaborative signal
        self.content_proj = nn.ModuleList(
            nn.Sequential(nn.Linear(d_content, cfg.d_content_proj), nn.LayerNorm(cfg.d_content_proj)) for _ in range(depth))
        self.collab_proj = nn.ModuleList(
            nn.Sequential(nn.Linear(d_collab, cfg.d_collab_proj), nn.LayerNorm(cfg.d_collab_proj)) for _ in range(depth))
        d_x = d_model + cfg.d_content_proj + cfg.d_collab_proj + d_cb
        self.top_k = cfg.top_k_experts
        self.gate = nn.Linear(d_x, cfg.num_experts, bias=False)  # W_g of Eq. 12
        # experts E_i = Linear(d_x, d_moe) -> GELU -> Linear(d_moe, d_moe), stored stacked (E, in, out)
        E = cfg.num_experts
        self.expert_w1 = nn.Parameter(torch.randn(E, d_x, cfg.d_moe) / math.sqrt(d_x))
        self.expert_b1 = nn.Parameter(torch.zeros(E, cfg.d_moe))
        self.expert_w2 = nn.Parameter(torch.randn(E, cfg.d_moe, cfg.d_moe) / math.sqrt(cfg.d_moe))
        self.expert_b2 = nn.Parameter(torch.zeros(E, cfg.d_moe))
        self.out = nn.Linear(cfg.d_moe, d_model)            # phi_out of Eq. 14
        # how the experts run: None = by device (see forward); True / False force one way (tests, benchmarks)
        self.dense_experts: Optional[bool] = None
        # eta starts small so the SID embedding dominates at first, but non-zero so the
        # experts receive gradient from the first step
        self.eta = nn.Parameter(torch.tensor(float(cfg.dsi_eta_init)))

    def expert_parameters(self) -> int:
        """Parameters of one expert (for the activated-parameter count)."""
        return sum(p[0].numel() for p in (self.expert_w1, self.expert_b1, self.expert_w2, self.expert_b2))

    def forward(self, e_id: torch.Tensor, content: torch.Tensor, collab: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """e_id (B, S, T, d_model), content (B, S, d_content), collab (B, S, d_collab), q (B, S, T, d_cb)."""
        cont = torch.stack([proj(content) for proj in self.content_proj], dim=2)   # (B, S, T, d_cp)
        coll = torch.stack([proj(collab) for proj in self.collab_proj], dim=2)     # (B, S, T, d_colp)
        x = torch.cat([e_id, cont, coll, q.to(e_id.dtype)], dim=-1)                 # Eq. 11
        logits = self.gate(x)
        if self.training:  # Eq. 12: exploration noise only while training
            logits = logits + torch.randn_like(logits)
        weights = self.routing_weights(logits)
        flat, w = x.flatten(0, -2), weights.flatten(0, -2)
        dense = x.is_cuda if self.dense_experts is None else self.dense_experts
        h_moe = self._experts_dense(flat, w) if dense else self._experts_routed(flat, w)
        h_moe = h_moe.view(*x.shape[:-1], -1).to(e_id.dtype)
        return e_id + self.eta * self.out(h_moe)                                    # Eq. 14

    def _experts_routed(self, flat: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Each expert on the tokens routed to it only: 2/3 of the expert FLOPs of running all
        three, in plain matmuls (the MoE runs twice as fast on a CPU), but every ``nonzero`` is a
        host sync, which stalls a GPU."""
        h_moe = flat.new_zeros(len(flat), self.expert_w2.shape[-1], dtype=torch.float32)
        for e in range(len(self.expert_w1)):
            idx = w[:, e].nonzero().squeeze(1)
            hidden = F.gelu(torch.addmm(self.expert_b1[e], flat[idx], self.expert_w1[e]))
            y = torch.addmm(self.expert_b2[e], hidden, self.expert_w2[e]) * w[idx, e, None]
            h_moe.index_add_(0, idx, y.float())  # in place: no copy of h_moe per expert
        return h_moe

    def _experts_dense(self, flat: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Every expert on every token in two batched matmuls, unselected experts weighted by
        exactly 0: the same sum with no host sync (the GPU way; 3/2 of the routed FLOPs)."""
        E = len(self.expert_w1)
        hidden = F.gelu(torch.baddbmm(self.expert_b1[:, None], flat.expand(E, -1, -1), self.expert_w1))
        y = torch.baddbmm(self.expert_b2[:, None], hidden, self.expert_w2)         # (E, N, d_moe)
        return torch.einsum("end,ne->nd", y.float(), w.float())

    def routing_weights(self, logits: torch.Tensor) -> torch.Tensor:
        """Eq. 13: softmax over the top-k gate logits only; unselected experts weigh exactly 0."""
        top, chosen = logits.topk(self.top_k, dim=-1)
        return torch.zeros_like(logits).scatter(-1, chosen, top.softmax(-1).to(logits.dtype))


class SemanticStructureAlignment(nn.Module):
    """SSA, Eq. 15: o_l regresses the target's codebook vector and classifies its level-l tag."""

    def __init__(self, d_model: int, d_cb: int, num_quantized: int, tag_vocab_sizes: list[int]):
        super().__init__()
        self.regress = nn.ModuleList(nn.Linear(d_model, d_cb) for _ in range(num_quantized))    # phi_reg^(l)
        self.classify = nn.ModuleList(nn.Linear(d_model, v) for v in tag_vocab_sizes)           # phi_cls^(l)

    def forward(self, out: torch.Tensor, target_q: torch.Tensor, target_tags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """out (B, T, d_model), target_q (B, L, d_cb), target_tags (B, levels) with 0 = PAD."""
        reg = sum(((head(out[:, l]).float() - target_q[:, l]) ** 2).sum(-1).mean()
                  for l, head in enumerate(self.regress))
        cls = out.new_zeros((), dtype=torch.float32)
        for l, head in enumerate(self.classify):
            tags = target_tags[:, l]
            known = (tags != 0).sum()
            # PAD tags are ignored; a batch without any known tag contributes 0 rather than NaN
            cls = cls + F.cross_entropy(head(out[:, l]).float(), tags, ignore_index=0, reduction="sum") / known.clamp_min(1)
        return reg, cls


class IntegratedSemanticRecommender(SequentialRecommender):
    def __init__(self, codes: np.ndarray, codebooks: np.ndarray, vocab_sizes: list[int], cfg: RecommenderConfig,
                 num_time_buckets: int, max_history: int, content: Optional[np.ndarray] = None,
                 collab: Optional[np.ndarray] = None, item_tags: Optional[np.ndarray] = None,
                 tag_vocab_sizes: Optional[list[int]] = None):
        super().__init__()
        self.cfg = cfg
        num_items, depth = codes.shape
        num_quantized, _, d_cb = codebooks.shape
        d = cfg.d_model
        self.depth, self.max_history, self.num_time_buckets = depth, max_history, num_time_buckets

        # ---- catalog tables (rebuilt from the run directory, so not saved in checkpoints)
        self.trie = SemanticIdTrie(codes, vocab_sizes)
        offsets = torch.tensor([0] + list(np.cumsum(vocab_sizes)[:-1]), dtype=torch.long)
        self.register_buffer("item_tokens", self.trie.codes + offsets, persistent=False)  # ids in one token table
        if cfg.use_dsi or cfg.use_ssa:
            # q_l of each item's token at each depth; TIGER's collision token has no codebook: zeros
            q = np.zeros((num_items, depth, d_cb), dtype=np.float32)
            L = min(num_quantized, depth)
            q[:, :L] = np.stack([codebooks[l][codes[:, l]] for l in range(L)], axis=1)
            self.register_buffer("item_q", torch.from_numpy(q), persistent=False)

        # ---- Eq. 10 input embedding
        self.token_emb = nn.Embedding(int(sum(vocab_sizes)), d)
        self.seq_pos_emb = nn.Embedding(max_history, d)   # P_seq, indexed by recency (0 = most recent)
        self.depth_emb = nn.Embedding(depth, d)           # P_hier
        self.time_emb = nn.Embedding(num_time_buckets, d)  # P_time
        self.item_emb = None
        if cfg.item_id_input:  # not in the paper (RecommenderConfig.item_id_input)
            if cfg.item_emb_std < 0:
                raise PrismrecError(f"recommender.item_emb_std: expected a standard deviation >= 0, got {cfg.item_emb_std}")
            if not cfg.item_emb_scale > 0:
                raise PrismrecError(f"recommender.item_emb_scale: expected a factor > 0, got {cfg.item_emb_scale}")
            if not 0 <= cfg.item_id_dropout < 1:
                raise PrismrecError(f"recommender.item_id_dropout: expected a probability in [0, 1), "
                                    f"got {cfg.item_id_dropout}")
            self.item_emb = nn.Embedding(num_items, d)
            if cfg.item_emb_std > 0:
                nn.init.normal_(self.item_emb.weight, std=cfg.item_emb_std)
            else:  # zeros_ draws no random numbers: earlier seeded runs initialise as before
                nn.init.zeros_(self.item_emb.weight)
        self.dsi = None
        if cfg.use_dsi:
            if content is None or collab is None:
                raise PrismrecError("DSI needs item features: run `prismrec features RUN_DIR` or train with --no-dsi")
            self.register_buffer("item_content", torch.tensor(np.asarray(content), dtype=torch.float32), persistent=False)
            self.register_buffer("item_collab", torch.tensor(np.asarray(collab), dtype=torch.float32), persistent=False)
            self.dsi = DynamicSemanticIntegration(depth, d, content.shape[1], collab.shape[1], d_cb, cfg)
        self.dropout = Dropout(cfg.dropout)

        # ---- backbone: pre-LN encoder-decoder, T5-style ReLU feed-forward (also the cheapest on CPU);
        # num_heads 4 by default: the paper's 6 heads do not divide d_model 128
        self.encoder = Encoder(cfg.encoder_layers, d, cfg.num_heads, cfg.d_ff, cfg.dropout)
        self.decoder = Decoder(cfg.decoder_layers, d, cfg.num_heads, cfg.d_ff, cfg.dropout)
        self.bos = nn.Parameter(torch.randn(d))
        self.dec_pos_emb = nn.Embedding(depth, d)         # decoder position = depth being generated
        # w_j of Eq. 17, per depth: own heads, or (tie_heads) the depth's rows of token_emb + a bias
        self.vocab_slices = [(int(o), int(o) + int(v)) for o, v in zip(offsets, vocab_sizes)]
        if cfg.tie_heads:
            self.heads = None
            self.head_bias = nn.ParameterList(nn.Parameter(torch.zeros(v)) for v in vocab_sizes)
        else:
            self.heads = nn.ModuleList(nn.Linear(d, v) for v in vocab_sizes)

        # ---- SSA
        self.ssa = None
        if cfg.use_ssa:
            if item_tags is None or tag_vocab_sizes is None:
                raise PrismrecError("SSA needs item tags from the prepared data (items.parquet tag_1..tag_L)")
            levels = min(depth, len(tag_vocab_sizes))
            self.register_buffer("item_tags", torch.tensor(np.asarray(item_tags)[:, :levels], dtype=torch.long), persistent=False)
            self.ssa = SemanticStructureAlignment(d, d_cb, min(num_quantized, depth), list(tag_vocab_sizes[:levels]))

        # ---- ATS: no parameters, only the branching factor of every item's own prefixes
        self.n_ref = math.sqrt(num_items) / 2.0
        if cfg.use_ats:
            self.register_buffer("item_branching", self.trie.item_branching().float(), persistent=False)

        # ---- item-level output head (RecommenderConfig.item_head; not in the paper): its item
        # vectors are built from token_emb (and item_emb), so it only adds one bias per item
        self.item_bias = nn.Parameter(torch.zeros(num_items)) if cfg.item_head else None
        for option in ("item_head_recent", "item_head_cosine"):  # options of the item head
            if getattr(cfg, option) and not cfg.item_head:
                raise PrismrecError(f"recommender.{option}: needs the item head, recommender.item_head=true")
        self.recent_query = None
        if cfg.item_head_recent:  # RecommenderConfig.item_head_recent: starts as the plain head
            self.recent_query = nn.Linear(d, d)
            nn.init.zeros_(self.recent_query.weight)
            nn.init.zeros_(self.recent_query.bias)

        self.item_log_scale = None
        if cfg.item_head_cosine:  # RecommenderConfig.item_head_cosine
            self.item_log_scale = nn.Parameter(torch.tensor(math.log(ITEM_COSINE_SCALE_INIT)))

        if cfg.item_head and any(not 0 <= w < math.inf for w in cfg.item_score_weights):
            raise PrismrecError(f"recommender.item_score_weights: expected finite weights >= 0, "
                                f"got {cfg.item_score_weights}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_context(cls, ctx: ModelContext, cfg: RecommenderConfig) -> "IntegratedSemanticRecommender":
        if ctx.sids is None:
            raise PrismrecError("the recommender needs Semantic IDs: run `prismrec tokenize RUN_DIR` first")
        if len(ctx.sids.codes) != ctx.num_items:
            raise PrismrecError(f"sids.parquet has {len(ctx.sids.codes)} items but data/items.parquet has "
                                f"{ctx.num_items}: re-run `prismrec tokenize RUN_DIR --force`")
        features = ctx.features if cfg.use_dsi else None
        if features is not None and (len(features.content) != ctx.num_items or len(features.collab) != ctx.num_items):
            raise PrismrecError(f"features/content.npy has {len(features.content)} rows and collab.npy "
                                f"{len(features.collab)} but data/items.parquet has {ctx.num_items} items: "
                                "re-run `prismrec features RUN_DIR --force`")
        tags = ctx.data.item_tags() if cfg.use_ssa else None
        return cls(ctx.sids.codes, ctx.sids.codebooks, ctx.sids.vocab_sizes, cfg,
                   num_time_buckets=ctx.data.config.num_time_buckets, max_history=ctx.data.config.max_history,
                   content=None if features is None else features.content,
                   collab=None if features is None else features.collab,
                   item_tags=tags, tag_vocab_sizes=[len(t) for t in ctx.data.tags] if cfg.use_ssa else None)

    def num_parameters(self) -> dict[str, int]:
        total = sum(p.numel() for p in self.parameters())
        inactive = 0 if self.dsi is None else (self.cfg.num_experts - self.cfg.top_k_experts) * self.dsi.expert_parameters()
        return {"total": total, "active": total - inactive}

    # ------------------------------------------------------------------ pieces
    def temperature(self, branching: torch.Tensor) -> torch.Tensor:
        """ATS, Eq. 16: tau_gen(N_l), low (sharp) in dense branches, tau_max where few children exist."""
        c = self.cfg
        return c.tau_min + (c.tau_max - c.tau_min) * torch.exp(-c.ats_alpha * branching / self.n_ref)

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder memory (B, S*T, d) and its padding mask (B, S*T) for a batch of histories."""
        history = batch.history
        B, S = history.shape
        items = history.clamp_min(0)
        recency = (S - 1 - torch.arange(S, device=history.device)).clamp_max(self.max_history - 1)
        e = (self.token_emb(self.item_tokens[items])                                   # (B, S, T, d)
             + self.seq_pos_emb(recency)[None, :, None]
             + self.depth_emb.weight[None, None]
             + self.time_emb(batch.time_bucket.clamp(0, self.num_time_buckets - 1))[:, :, None])
        if self.item_emb is not None:
            ids = self.item_emb(items)
            if self.training and self.cfg.item_id_dropout > 0:  # whole rows (RecommenderConfig.item_id_dropout)
                ids = ids * F.dropout(ids.new_ones(B, S, 1), self.cfg.item_id_dropout)
            e = e + self.cfg.item_emb_scale * ids[:, :, None]
        if self.dsi is not None:
            e = self.dsi(e, self.item_content[items], self.item_collab[items], self.item_q[items])
        pad = (history < 0).repeat_interleave(self.depth, dim=1)
        # an empty history would leave attention nothing to look at (NaN): let it see its padding
        pad = pad & (batch.length > 0).unsqueeze(1)
        memory = self.encoder(self.dropout(e.flatten(1, 2)), pad)
        return memory, pad

    def decode(self, memory, memory_pad: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """Decoder outputs (B, W, n+1, d) for BOS + each of a user's W prefixes (B, W, n) of token-table ids.

        ``memory``: the encoder output (B, S*T, d) or its ``decoder.memory_kv``.

        The W prefixes (beams, candidates) of a user are packed into one decoder sequence
        of W * (n+1) tokens, so the user's encoder memory is projected and attended once,
        never copied per beam; a block-diagonal causal mask keeps the prefixes independent.
        """
        B, W, n = prefix.shape
        x = torch.cat([self.bos.expand(B, W, 1, -1), self.token_emb(prefix)], dim=2) + self.dec_pos_emb.weight[: n + 1]
        position = torch.arange(W * (n + 1), device=prefix.device)
        beam = position // (n + 1)
        blocked = (beam[:, None] != beam[None, :]) | (position[None, :] > position[:, None])
        out = self.decoder(self.dropout(x.flatten(1, 2)), memory, blocked, memory_pad)
        return out.view(B, W, n + 1, -1)

    def logits(self, out: torch.Tensor, d: int) -> torch.Tensor:
        """Unscaled scores of the depth-d vocabulary for decoder outputs ``out`` (..., d_model)."""
        if self.heads is not None:
            return self.heads[d](out)
        start, stop = self.vocab_slices[d]
        weight = self.token_emb.weight[start:stop]
        return F.linear(out * self.cfg.d_model ** -0.5, weight, self.head_bias[d])

    def first_output(self, memory, memory_pad: torch.Tensor) -> torch.Tensor:
        """(B, d) decoder output o_0 at BOS (nothing generated yet): what the item head reads."""
        return self.decode(memory, memory_pad, memory_pad.new_zeros(len(memory_pad), 1, 0, dtype=torch.long))[:, 0, 0]

    def item_log_probs(self, first: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Item head: (B, num_items) log-softmax over the catalog for first decoder outputs o_0 (B, d)
        and the encoder memory (B, S*T, d) they read.

        An item's vector is the mean of its SID token embeddings (plus its item-id embedding):
        an item seldom seen as a target still scores through the tokens it shares. The query is
        o_0, plus (item_head_recent) a map of the memory at the most recent item's T tokens:
        histories are right-aligned, so those are the last T positions.
        """
        query = first
        if self.recent_query is not None:
            query = query + self.recent_query(memory[:, -self.depth:].mean(1))
        if self.item_log_scale is not None:  # s * cos: item_vectors() are unit vectors then
            query = F.normalize(query, dim=-1) * self.item_log_scale.exp()
        else:
            query = query * self.cfg.d_model ** -0.5
        return F.linear(query, self.item_vectors(), self.item_bias).float().log_softmax(-1)

    def item_vectors(self) -> torch.Tensor:
        """(num_items, d) the item head's item vectors. Without autograd (ranking) they are
        kept until a weight they read changes (in-place updates bump a tensor's version,
        ``to()`` makes new tensors): rebuilding them was half of a batch-1 ranking on a CPU."""
        weights = [self.token_emb.weight] + ([self.item_emb.weight] if self.item_emb is not None else [])
        versions = [w._version for w in weights]
        cached = self.__dict__.get("_item_vectors")  # (weak refs to the weights, their versions, vectors)
        if (not torch.is_grad_enabled() and cached is not None and cached[1] == versions
                and all(ref() is w for ref, w in zip(cached[0], weights))):
            return cached[2]
        vectors = self.token_emb(self.item_tokens).mean(1)
        if self.item_emb is not None:
            vectors = vectors + self.cfg.item_emb_scale * self.item_emb.weight
        if self.item_log_scale is not None:
            vectors = F.normalize(vectors, dim=-1)
        self.__dict__["_item_vectors"] = (None if torch.is_grad_enabled()
                                          else ([weakref.ref(w) for w in weights], versions, vectors))
        return vectors

    def decode_from_bos(self, memory_kv: list, memory_pad: torch.Tensor, prefix: torch.Tensor, first: torch.Tensor,
                        bos_cache: list) -> torch.Tensor:
        """``decode``'s outputs (B, C, n+1, d) for C prefixes (B, C, n) per user, incrementally from
        the BOS position's output ``first`` (B, d) and decoder cache (what beam search's first
        step leaves): n new positions per prefix instead of n + 1, none of them re-decoded."""
        C = prefix.shape[1]
        cache = [(k.expand(-1, C, -1, -1, -1), v.expand(-1, C, -1, -1, -1)) for k, v in bos_cache]
        outs = [first[:, None].expand(-1, C, -1)]
        for j in range(prefix.shape[2]):
            out, cache = self.decode_step(prefix[:, :, j], j + 1, memory_kv, memory_pad, cache)
            outs.append(out)
        return torch.stack(outs, 2)

    def decode_step(self, tokens: Optional[torch.Tensor], position: int, memory_kv: list, memory_pad: torch.Tensor,
                    cache: Optional[list]) -> tuple[torch.Tensor, list]:
        """``decode``'s output (B, W, d) at ``position`` for the newest tokens (B, W) of token-table
        ids (None: the BOS position, one sequence per user), given the decoder cache of the earlier
        positions (``Decoder.step``); returns it with the extended cache."""
        x = self.bos.expand(len(memory_pad), 1, -1) if tokens is None else self.token_emb(tokens)
        return self.decoder.step(self.dropout(x + self.dec_pos_emb.weight[position]), memory_kv, memory_pad, cache)

    def sid_log_probs(self, memory, memory_pad: torch.Tensor, candidates: torch.Tensor,
                      outputs: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, C) trie-constrained, temperature-scaled SID log-probability of given items: what
        beam search accumulates for an item it keeps. ``outputs``: the decoder outputs (B, C, T, d)
        of the items' SID prefixes when the caller has them (``decode_from_bos``), else teacher forcing."""
        B, C = candidates.shape
        flat = candidates.flatten()
        if outputs is None:
            outputs = self.decode(memory, memory_pad, self.item_tokens[candidates, :-1])
        out = outputs.flatten(0, 1)                                                            # (B*C, T, d)
        codes = self.trie.codes[flat]
        total = torch.zeros(len(flat), device=out.device)
        for d in range(self.depth):
            valid = self.trie.item_child_masks(flat, d)
            tau = None
            if self.cfg.use_ats:
                tau = self.temperature(self.trie.branching(d)[self.trie.item_nodes[flat, d]].float())
            logp = constrained_log_probs(self.logits(out[:, d], d), valid, tau)
            total = total + logp.gather(1, codes[:, d : d + 1]).squeeze(1)
        return total.view(B, C)

    # ------------------------------------------------------------------ contract
    def calculate_loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        memory, pad = self.encode(batch)
        target = batch.target
        out = self.decode(memory, pad, self.item_tokens[target, None, :-1])[:, 0]     # (B, T, d): o_1..o_T
        codes = self.trie.codes[target]
        tau = self.temperature(self.item_branching[target]) if self.cfg.use_ats else None
        gen = out.new_zeros((), dtype=torch.float32)
        for d in range(self.depth):  # Eq. 17: full-vocabulary softmax at each depth
            logits = self.logits(out[:, d], d).float()
            if tau is not None:
                logits = logits / tau[:, d : d + 1]
            gen = gen + F.cross_entropy(logits, codes[:, d])
        parts = {"gen": gen.detach()}
        loss = gen
        if self.ssa is not None:
            reg, cls = self.ssa(out, self.item_q[target], self.item_tags[target])
            loss = loss + self.cfg.gamma * (reg + cls)                                   # Eq. 18
            parts.update(ssa_reg=reg.detach(), ssa_cls=cls.detach())
        if self.item_bias is not None:
            item = F.nll_loss(self.item_log_probs(out[:, 0], memory), target)
            loss = loss + item
            parts.update(item=item.detach())
        return {"loss": loss, **parts}

    @torch.no_grad()
    def rank(self, batch: Batch, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k items by trie-constrained beam search (beam width max(cfg.beam_size, k)), re-scored
        with the item head when it is on (``candidate_scores``).

        Call ``model.eval()`` first (dropout and gate noise are training-only).
        """
        candidates, sid, item = self.candidate_scores(batch, k)
        if item is None:
            return candidates[:, :k], sid[:, :k]
        return rank_candidates(candidates, sid, item, self.cfg.item_score_weight, k)

    @property
    def has_item_head(self) -> bool:
        return self.item_bias is not None

    @torch.no_grad()
    def candidate_scores(self, batch: Batch, k: int) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Candidate items (B, C) with their SID log-probabilities and, with the item head, their
        item log-probabilities (else None); -1 / -inf where a slot holds no (new) item.

        The candidates are the beam's items, sorted, then the item head's own top ``width`` items
        (a target the SID path ranks low but the item path ranks high gets its chance); an item
        the beam already holds is not counted twice.
        """
        memory, pad = self.encode(batch)
        memory_kv = self.decoder.memory_kv(memory)  # projected once, read at every step
        offsets = self.item_tokens[0] - self.trie.codes[0]

        first = []   # o_0 of the first step (one empty prefix per user): the item head reads it too
        cache = []   # the decoder's self-attention keys / values of every beam's earlier positions
        bos_cache = []  # ... of the BOS position alone, which every candidate's SID starts from

        def step_logits(tokens: torch.Tensor, d: int, parent: Optional[torch.Tensor]) -> torch.Tensor:
            # the encoder ran once per user; all W beams of a user read that memory. Only the
            # newest position of each beam is decoded (``decode``'s last position, incrementally)
            newest = None if d == 0 else tokens[:, :, -1] + offsets[d - 1]
            if d > 0:
                rows = torch.arange(len(parent), device=parent.device)[:, None]
                cache[:] = [(k[rows, parent], v[rows, parent]) for k, v in cache]
            out, cache[:] = self.decode_step(newest, d, memory_kv, pad, cache or None)
            if d == 0:
                first.append(out[:, 0])
                bos_cache.extend(cache)
            return self.logits(out, d)

        temperature = self.temperature if self.cfg.use_ats else None
        width = max(self.cfg.beam_size, k)
        items, scores = beam_search(step_logits, self.trie, len(memory), width, temperature)
        if self.item_bias is None:
            return items, scores, None
        item_logp = self.item_log_probs(first[0], memory)
        extra = item_logp.topk(min(width, item_logp.shape[1]), dim=1).indices
        candidates = torch.cat([items, extra], 1)
        extra_out = self.decode_from_bos(memory_kv, pad, self.item_tokens[extra, :-1], first[0], bos_cache)
        sid = torch.cat([scores, self.sid_log_probs(memory_kv, pad, extra, extra_out)], 1)
        seen = torch.cat([items < 0, (extra[:, :, None] == items[:, None, :]).any(-1)], 1)
        sid = sid.masked_fill(seen, float("-inf"))
        return candidates, sid, item_logp.gather(1, candidates.clamp_min(0))

    @torch.no_grad()
    def score_items(self, batch: Batch, candidates: torch.Tensor) -> torch.Tensor:
        """(B, C) score of given items, the one ``rank`` sorts by: the trie-constrained,
        temperature-scaled SID log-probability that beam search accumulates (computed by teacher
        forcing), plus ``item_score_weight`` * the item head's log-probability when it is on.

        Exhaustive reference for tests and small catalogs (memory grows with B * C).
        """
        memory, pad = self.encode(batch)
        scores = self.sid_log_probs(memory, pad, candidates)
        if self.item_bias is not None:
            item_logp = self.item_log_probs(self.first_output(memory, pad), memory)
            scores = scores + self.cfg.item_score_weight * item_logp.gather(1, candidates)
        return scores


def rank_candidates(candidates: torch.Tensor, sid: torch.Tensor, item: torch.Tensor, weight: float,
                    k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of ``candidate_scores``' items (B, k) by sid + weight * item, with their scores;
    -1 where a slot holds no item."""
    scores, order = (sid + weight * item).topk(k, dim=1)
    return torch.where(torch.isfinite(scores), candidates.gather(1, order), -1), scores
