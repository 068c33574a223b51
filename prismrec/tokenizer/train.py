"""The tokenize stage: train the quantizer, deduplicate, write SIDs and the quality report.

``tokenize_run(run_dir, cfg)`` builds ``RUN_DIR/<variant>/`` (see store.py) from the
prepared data and the item features; it is skipped when neither they nor the config
changed (unless ``force``).
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from prismrec.artifacts import (atomic_write, build_stage, fingerprint_settings, is_current, require_stage, stage_fingerprint,
                                stage_fingerprint_for, write_json, write_text)
from prismrec.data.dataset import PreparedData, load_prepared
from prismrec.device import resolve_device
from prismrec.errors import PrismrecError
from prismrec.features.store import ItemFeatures, load_features
from prismrec.tokenizer.config import TokenizerConfig
from prismrec.tokenizer.dedup import deduplicate, tiger_suffix
from prismrec.tokenizer.psq import PurifiedSemanticQuantizer
from prismrec.tokenizer.quality import markdown_table, quality_report
from prismrec.tokenizer.store import SemanticIds, variant_name, write_sids

log = logging.getLogger("prismrec")


def normalised(cfg: TokenizerConfig) -> TokenizerConfig:
    """Check the config; TIGER mode has none of PRISM's modules, so its flags are off."""
    if cfg.mode not in ("prism", "tiger"):
        raise PrismrecError(f"tokenizer.mode: expected prism or tiger, got {cfg.mode!r}")
    if cfg.num_layers < 2 or cfg.codebook_size < 2:
        raise PrismrecError("tokenizer.num_layers and tokenizer.codebook_size must be at least 2")
    if cfg.mode == "tiger":
        cfg = replace(cfg, use_acd=False, use_hsa=False, use_dhr=False)
    return cfg


# ----------------------------------------------------------------------------- inputs
def check_inputs(data: PreparedData, features: ItemFeatures, run_dir: Path) -> None:
    """Clear one-line errors for inputs the quantizer cannot use."""
    items = run_dir / "data" / "items.parquet"
    text = data.items["text"].fillna("").astype(str).str.strip()
    if (text == "").any():
        row = int(np.flatnonzero((text == "").to_numpy())[0])
        raise PrismrecError(f"{items}: row {row} (item {data.items['item_id'].iloc[row]!r}): field 'text' is empty; "
                            f"every item needs text for its content embedding ({int((text == '').sum())} items have none)")
    feats = run_dir / "features"
    if features.num_items != data.num_items:
        raise PrismrecError(f"{feats}/content.npy: {features.num_items} rows, expected one per item ({data.num_items}); "
                            "rerun `prismrec features RUN_DIR --force`")
    if features.collab.shape[0] != data.num_items:
        raise PrismrecError(f"{feats}/collab.npy: {features.collab.shape[0]} rows, expected {data.num_items}")
    for name, array in (("content", features.content), ("collab", features.collab)):
        bad = ~np.isfinite(array).all(1)
        if name == "content":
            bad |= ~np.any(array != 0, axis=1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise PrismrecError(f"{feats}/{name}.npy: row {row} (item {data.items['item_id'].iloc[row]!r}) is "
                                f"{'all zeros' if np.isfinite(array[row]).all() else 'not finite'}; expected an embedding")


def hsa_inputs(data: PreparedData, features: ItemFeatures, cfg: TokenizerConfig) -> tuple[np.ndarray | None, list[np.ndarray]]:
    """Per-item tags (N, L') and tag tables for HSA, or (None, []) with a warning when there are none."""
    if not cfg.use_hsa:
        return None, []
    levels = min(data.num_levels, len(features.tag_embeddings), cfg.num_layers)
    tags = data.item_tags()[:, :levels] if levels else np.zeros((data.num_items, 0), np.int64)
    if levels == 0 or not (tags > 0).any():
        log.warning("tokenize: the items have no category tags; HSA is off for this run")
        return None, []
    tables = features.tag_embeddings[:levels]
    for level in range(levels):
        if tags[:, level].max() >= len(tables[level]):
            raise PrismrecError(f"features/tags_level{level + 1}.npy: {len(tables[level])} rows, but items use tag "
                                f"index {int(tags[:, level].max())}; rerun `prismrec features RUN_DIR --force`")
    return tags, tables


# ----------------------------------------------------------------------------- training
def warmup_cosine(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def train_quantizer(cfg: TokenizerConfig, content: np.ndarray, collab: np.ndarray, popularity: np.ndarray,
                    tags: np.ndarray | None, tag_tables: list[np.ndarray], progress: bool | None = None
                    ) -> PurifiedSemanticQuantizer:
    """Train a quantizer on all items (deterministic for a seed on a given device)."""
    device = resolve_device(cfg.device, "tokenizer.device")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    content_t = torch.as_tensor(content, dtype=torch.float32, device=device)
    collab_t = torch.as_tensor(collab, dtype=torch.float32, device=device)
    pop_t = torch.tensor(np.asarray(popularity), dtype=torch.float32, device=device)
    tags_t = torch.tensor(tags, dtype=torch.long, device=device) if tags is not None else None
    tables = [torch.as_tensor(t, dtype=torch.float32) for t in tag_tables] if tags is not None else None
    model = PurifiedSemanticQuantizer(cfg, content.shape[1], collab.shape[1], tables).to(device)

    model.set_input_stats(content_t, collab_t)
    n = len(content)
    sample = torch.randperm(n, generator=gen)[: cfg.kmeans_samples].to(device)
    model.eval()
    with torch.no_grad():
        model.quantizer.kmeans_init(model.encode(content_t[sample], collab_t[sample]), cfg.seed)
    model.train()

    # codebooks: own learning rate and no weight decay (decay would drag codes to the origin)
    books = [model.quantizer.codebooks]
    rest = [p for n, p in model.named_parameters() if n != "quantizer.codebooks"]
    opt = torch.optim.AdamW([{"params": rest}, {"params": books, "lr": cfg.lr * cfg.codebook_lr_scale,
                                                "weight_decay": 0.0}], lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, total, max(1, int(cfg.warmup_frac * total))))
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(range(cfg.epochs), desc=f"tokenize {variant_name(cfg.mode, cfg.use_acd, cfg.use_hsa, cfg.use_dhr, cfg.collab_direction)}",
               disable=not show)
    for epoch in bar:
        order = torch.randperm(n, generator=gen).to(device)
        sums: dict[str, float] = {}
        for start in range(0, n, cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            losses = model(content_t[idx], collab_t[idx], pop_t[idx], tags_t[idx] if tags_t is not None else None)
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            if cfg.ema_decay > 0:
                model.quantizer.ema_step(cfg.ema_decay)
            sched.step()
            for k, v in losses.items():
                if k != "codes":
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
        # revive dead codes while the codebooks are still settling (not in the last 10% of epochs)
        revived = 0
        if cfg.revive_every and (epoch + 1) % cfg.revive_every == 0 and epoch < 0.9 * cfg.epochs:
            revived = model.quantizer.revive_dead_codes(gen)
        else:
            model.quantizer.usage.zero_()
        bar.set_postfix(loss=f"{sums['total'] / steps_per_epoch:.4f}", revived=revived)
        if epoch == cfg.epochs - 1 or (epoch + 1) % max(1, cfg.epochs // 5) == 0:
            log.info("tokenize epoch %d/%d: %s", epoch + 1, cfg.epochs,
                     " ".join(f"{k}={v / steps_per_epoch:.4f}" for k, v in sums.items()))
    model.eval()
    if cfg.mode == "prism" and cfg.refit_iters > 0:  # TIGER stays a plain RQ-VAE baseline
        with torch.no_grad():
            model.quantizer.balanced_refit(model.encode(content_t, collab_t), cfg.refit_iters, cfg.refit_epsilon)
    return model


# options added after SIDs were built, with their off value (artifacts.fingerprint_settings)
ADDED_OPTIONS = {"collab_direction": False}


# ----------------------------------------------------------------------------- the stage
def tokenize_run(run_dir: Path, cfg: TokenizerConfig, force: bool = False) -> Path:
    run_dir = Path(run_dir)
    cfg = normalised(cfg)
    name = variant_name(cfg.mode, cfg.use_acd, cfg.use_hsa, cfg.use_dhr, cfg.collab_direction)
    require_stage(run_dir, "data", "prismrec prepare ... --out RUN_DIR")
    require_stage(run_dir, "features", "prismrec features RUN_DIR")
    inputs = {"data": stage_fingerprint(run_dir / "data"), "features": stage_fingerprint(run_dir / "features")}
    # the device does not make the stage stale (CPU and GPU agree up to float rounding)
    config = {"tokenizer": fingerprint_settings(cfg, ("device",), ADDED_OPTIONS)}
    final = run_dir / name
    if not force and is_current(final, stage_fingerprint_for(config, inputs)):
        log.info("tokenize: %s is up to date (use --force to recompute)", final)
        return final

    data, features = load_prepared(run_dir), load_features(run_dir)
    check_inputs(data, features, run_dir)
    tags, tag_tables = hsa_inputs(data, features, cfg)
    with build_stage(final, config=config, inputs=inputs) as stage:
        model = train_quantizer(cfg, features.content, features.collab, data.popularity(), tags, tag_tables)
        codes_t, z_t = model.tokenize(torch.as_tensor(features.content, dtype=torch.float32, device=next(model.parameters()).device),
                                      torch.as_tensor(features.collab, dtype=torch.float32, device=next(model.parameters()).device))
        codes, z = codes_t.cpu().numpy(), z_t.cpu().numpy()
        codebooks = model.quantizer.codebooks.detach().cpu().numpy()
        if cfg.mode == "tiger":
            final_codes, moved, extra, greedy = tiger_suffix(codes, cfg.codebook_size), np.zeros(0, np.int64), 0.0, 0.0
        else:
            result = deduplicate(codes, z, codebooks, cfg.dedup_neighbourhood, cfg.dedup_beam,
                                 cfg.sinkhorn_epsilon, cfg.sinkhorn_iters)
            final_codes, moved = result.codes, result.moved
            extra, greedy = result.mean_extra_distance, result.greedy_mean_extra_distance
        report = quality_report(codes, final_codes, cfg.codebook_size, len(moved), extra)
        write_sids(stage, SemanticIds(codes=final_codes, codebooks=codebooks,
                                      item_ids=data.items["item_id"].to_numpy()))
        write_json(stage / "quality.json", report)
        write_json(stage / "dedup.json", {"moved_items": int(len(moved)), "ot_mean_extra_distance": extra,
                                          "greedy_next_free_mean_extra_distance": greedy,
                                          "hsa": model.use_hsa, "acd": model.use_acd, "dhr": model.use_dhr})
        write_text(stage / "quality.md", markdown_table({name: report}, with_paper=False))
        state = {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "config": asdict(cfg),
                 "content_dim": features.content.shape[1], "collab_dim": features.collab.shape[1]}
        atomic_write(stage / "model.pt", lambda p: torch.save(state, p))
        log.info("tokenize: %s: final collision %.2f%% before dedup, %d items moved, %.2f%% after",
                 name, 100 * report["before_dedup"]["collision_rate"][-1], len(moved),
                 100 * report["after_dedup"]["collision_rate"][-1])
    return final
