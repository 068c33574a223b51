"""The features stage: prepared data -> content, tag and collaborative item embeddings."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from prismrec.artifacts import build_stage, is_current, stage_fingerprint, stage_fingerprint_for, write_json
from prismrec.data.dataset import PreparedData, load_prepared
from prismrec.device import resolve_device
from prismrec.errors import PrismrecError
from prismrec.features import encoder as text_encoder
from prismrec.features.config import FeatureConfig
from prismrec.features.lightgcn import train_lightgcn, training_interactions
from prismrec.features.store import STAGE, ItemFeatures, write_features

log = logging.getLogger("prismrec")

RUNTIME_SETTINGS = ("gcn_threads", "device")


def check_item_texts(data: PreparedData, where: str) -> list[str]:
    """The items' encoder texts; items with no text are an error naming them."""
    texts = data.items["text"]
    empty = texts.isna() | (texts.astype(str).str.strip() == "")
    if empty.any():
        ids = data.items.loc[empty, "item_id"].astype(str).tolist()
        examples = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
        raise PrismrecError(f"{where}: {len(ids)} items have empty text, e.g. {examples}; "
                            "every item needs a non-empty 'text' for the content encoder")
    return texts.astype(str).tolist()


@contextlib.contextmanager
def torch_threads(n: int):
    """Run a block with ``n`` torch CPU threads (0: unchanged), restoring the previous setting."""
    import torch

    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_features(run_dir: Path, cfg: FeatureConfig, force: bool = False) -> Path:
    """Build ``RUN_DIR/features`` unless it is current for this config and data stage."""
    run_dir = Path(run_dir)
    final = run_dir / STAGE
    # where and how fast it runs does not make the stage stale (CPU and GPU agree up to float rounding)
    config = {"features": {k: v for k, v in asdict(cfg).items() if k not in RUNTIME_SETTINGS}}
    inputs = {"data": stage_fingerprint(run_dir / "data")}
    if not force and is_current(final, stage_fingerprint_for(config, inputs)):
        log.info("features: up to date in %s (use --force to recompute)", final)
        return final

    started = time.time()
    data = load_prepared(run_dir)
    texts = check_item_texts(data, str(run_dir / "data" / "items.parquet"))
    device = str(resolve_device(cfg.device, "features.device"))

    precision = text_encoder.resolve_precision(cfg.encode_precision, device)
    log.info("features: encoding %d item texts and %d tag levels with %s (%s, %s)",
             len(texts), data.num_levels, cfg.encoder, device, precision)
    model = text_encoder.load_encoder(cfg.encoder, device)
    content = text_encoder.encode_texts(model, texts, batch_size=cfg.encode_batch_size, precision=precision)
    tags = text_encoder.encode_tags(model, data.tags, batch_size=cfg.encode_batch_size, precision=precision)
    del model
    encode_seconds = time.time() - started

    inter = training_interactions(data)
    log.info("features: LightGCN on %d users, %d items, %d training pairs (%s)",
             inter.num_users, inter.num_items, len(inter.train_users), device)
    with torch_threads(cfg.gcn_threads):
        gcn = train_lightgcn(inter, dim=cfg.collab_dim, num_layers=cfg.gcn_layers, lr=cfg.gcn_lr, l2=cfg.gcn_l2,
                             batch_size=cfg.gcn_batch_size, epochs=cfg.gcn_epochs,
                             eval_every=cfg.gcn_eval_every, patience=cfg.gcn_patience, k=cfg.gcn_topk,
                             seed=cfg.seed, device=device)

    features = ItemFeatures(content=content, collab=gcn.item_embeddings, tag_embeddings=tags)
    summary = {"encoder": cfg.encoder, "encode_precision": precision, "content_dim": int(content.shape[1]),
               "encode_seconds": round(encode_seconds, 2), "training_pairs": int(len(inter.train_users)),
               **gcn.summary(cfg.gcn_topk)}
    with build_stage(final, config=config, inputs=inputs, started=started,
                     extra={"lightgcn": {k: v for k, v in summary.items() if k != "curve"}}) as stage:
        write_features(stage, features)
        write_json(stage / "lightgcn.json", summary)
    log.info("features: wrote %s (content %s, collab %s)", final, content.shape, gcn.item_embeddings.shape)
    return final
