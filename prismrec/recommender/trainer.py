"""Generic trainer of any ``SequentialRecommender`` (PRISM, TIGER, SASRec; most-popular just stores).

``train_run(run_dir, cfg)`` writes ``RUN_DIR/models/<name>/``:

``best.pt``         the checkpoint with the best validation NDCG@10 (model selection)
``last.pt``         resumable state (model, optimizer, scheduler, epoch + step, best, RNG),
                    written atomically after every epoch and when a time budget stops the run
``train_log.json``  per-epoch loss, validation metrics and seconds
``manifest.json``   written when training ends (early stop, last epoch or time budget);
                    config + input fingerprints, so an unchanged model is not retrained

Batches are length-bucketed: examples are shuffled, sorted by history length
(stable, so equal lengths stay shuffled), cut into batches and the batch order
shuffled again, so a batch of short histories runs on a short (trimmed) input.
The batch order of an epoch depends only on (seed, epoch), which lets a resumed
run skip exactly the batches it already trained on.

Under ``torchrun`` the same loop trains one replica per process on its slice of every
batch and validates its share of the users (``prismrec.distributed``); rank 0 writes,
and the time-based decisions (schedule, budget, checkpoints) are rank 0's, broadcast
every ``SYNC_STEPS`` steps.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from prismrec.artifacts import (MANIFEST, atomic_write, fingerprint_settings, is_current, read_json,
                                stage_fingerprint_for, stage_manifest, write_json)
from prismrec.device import mixed_precision, resolve_device
from prismrec.distributed import DistributedContext
from prismrec.errors import MissingStageError, PrismrecError
from prismrec.evaluation.evaluator import picked_weight_metrics
from prismrec.evaluation.metrics import SELECT_ON
from prismrec.recommender.base import Batch, SequentialRecommender
from prismrec.recommender.config import RecommenderConfig
from prismrec.recommender.registry import build_model, check_model, load_context, model_dir_name, stage_inputs

log = logging.getLogger("prismrec")

CHECKPOINT_EVERY_S = 600  # also save last.pt mid-epoch this often, for long epochs
# with replicas, rank 0's clock reaches the others this often (a broadcast is a host sync)
SYNC_STEPS = 20
# fields that change how the model is trained; device, budgets, eval batch size and the item
# head's ranking weight do not.
# schedule_minutes is a budget too: a schedule-ended run given a longer one carries on
# from last.pt (a warm restart: the cosine picks up where the longer schedule stands).
NOT_TRAINING_SETTINGS = ("device", "amp_cpu", "max_minutes", "eval_batch_size", "schedule_minutes",
                         "item_score_weight", "item_score_weights")
# options added after runs were trained, with their off value (artifacts.fingerprint_settings)
ADDED_OPTIONS = {"tie_heads": False, "sid_stage": "", "item_id_input": False, "item_head": False,
                 "item_head_recent": False, "item_emb_std": 0.0, "item_emb_scale": 1.0, "item_id_dropout": 0.0}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def training_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled, length-bucketed batches of example indices (see module docstring)."""
    shuffled = rng.permutation(len(lengths))
    by_length = shuffled[np.argsort(lengths[shuffled], kind="stable")]
    batches = [by_length[i:i + batch_size] for i in range(0, len(by_length), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def lr_schedule(kind: str, total_steps: int, warmup_steps: int, time_progress=None):
    """Multiplier of the base learning rate at each optimizer step. With ``time_progress`` (a
    callable giving the share of the time schedule used, 0..1) the cosine follows whichever of
    time and steps is further along: a slow machine ends it on the clock, a fast one (a GPU,
    which would otherwise spend the budget over-fitting at a high rate) at ``total_steps``.
    The warmup is in steps either way."""
    if kind == "constant":
        return lambda step: 1.0
    if kind != "warmup-cosine":
        raise PrismrecError(f"recommender schedule: expected constant or warmup-cosine, got {kind!r}")
    warmup = max(1, min(warmup_steps, total_steps // 2))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        if time_progress is not None:
            progress = max(progress, time_progress())
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def training_settings(cfg: RecommenderConfig) -> dict:
    return fingerprint_settings(cfg, NOT_TRAINING_SETTINGS, ADDED_OPTIONS)


def model_dir(run_dir: str | Path, cfg: RecommenderConfig) -> Path:
    return Path(run_dir) / "models" / model_dir_name(cfg)


def save_checkpoint(path: Path, obj: dict) -> None:
    atomic_write(path, lambda p: torch.save(obj, p))


def require_trained(run_dir: str | Path, cfg: RecommenderConfig) -> Path:
    path = model_dir(run_dir, cfg)
    if (path / "last.pt").exists() and not (path / MANIFEST).exists():
        # killed mid-training: the manifest is written when training ends or stops on its budget
        raise MissingStageError(f"{path}: the training of '{path.name}' was interrupted; resume it with "
                                f"`prismrec train {run_dir} --model {path.name}` ("
                                "`--max-minutes M` to stop it after M minutes with a validated best checkpoint)")
    if not (path / MANIFEST).exists() or not (path / "best.pt").exists():
        raise MissingStageError(f"{path}: trained model '{path.name}' not found; run "
                                f"`prismrec train {run_dir} --model {path.name}` first")
    return path


def load_trained(run_dir: str | Path, cfg: RecommenderConfig, device: torch.device | str = "cpu"):
    """(model in eval mode, its ModelContext, the best checkpoint dict)."""
    path = require_trained(run_dir, cfg)
    ctx = load_context(run_dir, cfg)
    model = build_model(ctx, cfg)
    checkpoint = torch.load(path / "best.pt", map_location="cpu", weights_only=False)
    model.load_state_dict(checkpoint["model"])
    if checkpoint.get("item_score_weight") is not None and cfg.item_score_weights:  # picked on validation
        model.cfg = dataclasses.replace(model.cfg, item_score_weight=checkpoint["item_score_weight"])
    return model.to(device).eval(), ctx, checkpoint


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train_run(run_dir: str | Path, cfg, force: bool = False) -> Path:
    """Train the configured model on ``RUN_DIR`` and return its model directory.

    ``cfg`` is the pipeline config (or its ``recommender`` section). An unchanged,
    finished model is reused unless ``force``; an interrupted or time-limited run
    resumes from ``last.pt``.
    """
    rcfg: RecommenderConfig = getattr(cfg, "recommender", cfg)
    check_model(rcfg)
    run_dir = Path(run_dir)
    out = model_dir(run_dir, rcfg)
    ctx = load_context(run_dir, rcfg)  # clear error when an input stage is missing
    settings = training_settings(rcfg)
    inputs = stage_inputs(run_dir, rcfg)
    fingerprint = stage_fingerprint_for(settings, inputs)
    if not force and is_current(out, fingerprint) and not _more_to_train(out, rcfg):
        log.info("train %s: unchanged, reusing %s", out.name, out)
        return out
    replicas = DistributedContext.from_env()
    device = replicas.device(resolve_device(rcfg.device, "recommender.device"))
    replicas.start(device)
    try:
        _train(out, ctx, rcfg, settings, inputs, fingerprint, device, replicas, force)
        # the replicas leave together, once rank 0 has written its files: one tearing down its
        # gloo group while another still works in it has aborted the process (SIGABRT, seen in CI)
        replicas.barrier()
    finally:
        replicas.stop()
    return out


def _train(out: Path, ctx, rcfg: RecommenderConfig, settings: dict, inputs: dict, fingerprint: str,
           device: torch.device, replicas: DistributedContext, force: bool) -> None:
    main = replicas.is_main  # the one process that validates and writes files
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / MANIFEST).unlink(missing_ok=True)  # the directory is in flux until training ends
    seed_everything(rcfg.seed)
    model = build_model(ctx, rcfg).to(device)
    started = time.time()
    params = model.num_parameters()
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:  # most-popular: nothing to fit, store it as the selected model
        if main:
            save_checkpoint(out / "best.pt", {"model": model.state_dict(), "epoch": 0, "valid": None,
                                              "config": dataclasses.asdict(rcfg)})
            write_json(out / "train_log.json", {"model": out.name, "epochs": [], "best_epoch": 0,
                                                "stop_reason": "no_parameters", "parameters": params})
            _write_manifest(out, settings, inputs, "no_parameters", started)
        return

    train, valid = ctx.data.examples("train"), ctx.data.examples("valid")
    if len(train) == 0:
        raise PrismrecError(f"{out.parent.parent / 'data'}: no training examples (every user needs at least 4 items)")
    if rcfg.batch_size < replicas.world_size:
        raise PrismrecError(f"recommender.batch_size {rcfg.batch_size}: must be at least the number of "
                            f"processes ({replicas.world_size}); it is the global batch, split between them")
    sasrec = rcfg.model == "sasrec"
    # AdamW: with weight_decay 0 (the default) exactly Adam; above 0 the decay is decoupled from
    # the adaptive step, so it regularises every weight alike. Fused on a GPU: a few kernels per
    # step instead of several per parameter tensor (a step of these small models is launch-bound)
    optimizer = torch.optim.AdamW(trainable, lr=rcfg.sasrec_lr if sasrec else rcfg.lr, weight_decay=rcfg.weight_decay,
                                  fused=device.type == "cuda")
    steps_per_epoch = math.ceil(len(train) / rcfg.batch_size)
    state = {"epoch": 0, "step": 0, "loss_sums": {}, "best": -1.0, "best_epoch": 0, "bad_evals": 0,
             "log": [], "stop_reason": None, "trained_seconds": 0.0}
    clock = {"since": time.time()}  # training time not yet added to state["trained_seconds"]
    # what every replica knows of rank 0's clock: training seconds over all sessions of this run
    # (a resume carries them on) and seconds of this session; refreshed by tick()
    shared = {"trained": 0.0, "session": 0.0}

    def trained_seconds() -> float:
        return state.get("trained_seconds", 0.0) + time.time() - clock["since"]

    def tick(step: int | None = None) -> None:
        """Refresh ``shared``: every step alone, every SYNC_STEPS steps (and when step is None) with replicas."""
        if replicas.active and step is not None and step % SYNC_STEPS:
            return
        shared["trained"], shared["session"] = replicas.broadcast_floats(
            [trained_seconds(), time.time() - session_start], device)

    def time_progress() -> float:
        return shared["trained"] / (60 * rcfg.schedule_minutes)

    timed = rcfg.schedule_minutes > 0

    def schedule_over() -> bool:  # the time-scheduled learning rate has decayed to 0
        return timed and time_progress() >= 1.0

    def out_of_budget() -> bool:
        return rcfg.max_minutes > 0 and shared["session"] > rcfg.max_minutes * 60
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(
        rcfg.sasrec_schedule if sasrec else "warmup-cosine", rcfg.epochs * steps_per_epoch, rcfg.warmup_steps,
        time_progress if timed else None))

    last = out / "last.pt"
    if last.exists() and not force:
        saved = torch.load(last, map_location="cpu", weights_only=False)
        if saved.get("fingerprint") == fingerprint:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            state = saved["state"]
            if state["stop_reason"] in ("time_budget", "schedule_end"):
                state["stop_reason"] = None  # a new budget or a longer schedule: carry on
            _set_rng_state(saved["rng"])
            if main:
                log.info("train %s: resuming at epoch %d, batch %d", out.name, state["epoch"] + 1, state["step"])
    if replicas.active:
        replicas.barrier()  # every replica has read last.pt before rank 0 may delete it
        if not main:  # rank 0's random stream is the resumable one; the others get their own
            torch.manual_seed(hash((rcfg.seed, replicas.rank, state["epoch"], state["step"])) % 2**63)
    if main and state["step"] == 0 and state["epoch"] == 0:
        for stale in ("best.pt", "last.pt", "train_log.json"):
            (out / stale).unlink(missing_ok=True)

    def save_last() -> None:
        state["trained_seconds"], clock["since"] = trained_seconds(), time.time()
        save_checkpoint(last, {"fingerprint": fingerprint, "model": model.state_dict(),
                               "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                               "state": state, "rng": _rng_state()})

    def write_log() -> None:
        write_json(out / "train_log.json", {"model": out.name, "epochs": state["log"], "best_epoch": state["best_epoch"],
                                            f"best_valid_{SELECT_ON}": state["best"], "stop_reason": state["stop_reason"],
                                            "parameters": params, "examples": len(train),
                                            "batches_per_epoch": steps_per_epoch})

    step_model = replicas.wrap(model, device)  # what the training step calls (DDP with replicas)
    amp = mixed_precision(device, rcfg.amp, rcfg.amp_cpu)
    first_pass = True
    clock["since"] = session_start = time.time()
    while state["epoch"] < rcfg.epochs and state["stop_reason"] is None:
        tick()
        if out_of_budget() and not first_pass:  # the last evaluation used up the budget
            state["stop_reason"] = "time_budget"
            break
        if schedule_over() and state["log"] and "valid" in state["log"][-1]:
            state["stop_reason"] = "schedule_end"  # ended with a validated epoch: nothing left to do
            break
        first_pass = False
        epoch = state["epoch"]
        epoch_start, saved_at = time.time(), shared["trained"]
        batches = training_batches(train.length, rcfg.batch_size, np.random.default_rng([rcfg.seed, epoch]))
        model.train()
        running = {}  # loss parts summed on the device: no host sync per step
        bar = tqdm(range(state["step"], len(batches)), desc=f"epoch {epoch + 1}", unit="batch", leave=False,
                   disable=None if main else True)
        for i in bar:
            # the same global batch on every replica, each training on its slice (a last batch
            # smaller than the number of replicas is skipped by all of them alike)
            if len(batches[i]) >= replicas.world_size:
                shard = replicas.shard(batches[i])
                batch = Batch.from_examples(train, shard, device)
                with amp:
                    parts = step_model(batch)
                optimizer.zero_grad(set_to_none=True)
                # DDP averages the replicas' gradients: weighing each replica's mean loss by its
                # share of the batch makes that the gradient of the whole batch's mean loss
                share = len(shard) * replicas.world_size / len(batches[i])
                (parts["loss"] * share if share != 1 else parts["loss"]).backward()
                optimizer.step()
                scheduler.step()
                for name, value in parts.items():
                    value = torch.as_tensor(value, device=device).detach().float()
                    running[name] = running[name] + value if name in running else value
            state["step"] = i + 1
            tick(state["step"])
            if out_of_budget():
                state["stop_reason"] = "time_budget"
                break
            if schedule_over():
                state["stop_reason"] = "schedule_end"
                break
            if shared["trained"] - saved_at > CHECKPOINT_EVERY_S:  # long epochs: a kill loses at most this much
                _drain(running, state)
                if main:
                    save_last()
                saved_at = shared["trained"]
        bar.close()
        _drain(running, state)
        state["loss_sums"] = replicas.mean_floats(state["loss_sums"], device)
        finished_epoch = state["step"] == len(batches)
        # validate on schedule, at the last epoch, and before a time stop (so a best checkpoint exists)
        metrics = None
        if (finished_epoch and ((epoch + 1) % rcfg.eval_every == 0 or epoch + 1 == rcfg.epochs)) \
                or state["stop_reason"] in ("time_budget", "schedule_end"):
            metrics = validation_metrics(model, valid, rcfg, device, amp, replicas)
        if main:
            _end_epoch(model, metrics, rcfg, state, epoch, finished_epoch, epoch_start, scheduler, out)
            state["log"][-1]["trained_seconds"] = round(trained_seconds(), 3)
            save_last()
            write_log()
        state = replicas.broadcast_object(state)  # rank 0's bookkeeping and decisions for every replica

    if main:
        if not (out / "best.pt").exists():  # epochs=0: keep the untrained model so evaluation still works
            save_checkpoint(out / "best.pt", {"model": model.state_dict(), "epoch": 0, "valid": None,
                                              "config": dataclasses.asdict(rcfg)})
        write_log()
        _write_manifest(out, settings, inputs, state["stop_reason"] or "max_epochs", started,
                        best_epoch=state["best_epoch"], best_valid=state["best"])


def validation_metrics(model: SequentialRecommender, valid, rcfg: RecommenderConfig, device: torch.device, amp,
                       replicas: DistributedContext) -> dict[str, float]:
    """Recall/NDCG of the validation split; replicas each rank their slice of it. With the item
    head, those of the best of ``rcfg.item_score_weights``, the weight under ``item_score_weight``."""
    index = replicas.shard(np.arange(len(valid)))
    with amp:
        return picked_weight_metrics(model, valid.subset(index), rcfg, replicas.gather,
                                     batch_size=rcfg.eval_batch_size, device=device)


def _end_epoch(model: SequentialRecommender, metrics: dict | None, rcfg: RecommenderConfig, state: dict, epoch: int,
               finished_epoch: bool, epoch_start: float, scheduler, out: Path) -> None:
    """Rank 0's bookkeeping after a (full or interrupted) epoch: the log entry, the best
    checkpoint (when validated) and early stopping."""
    means = {name: total / max(state["step"], 1) for name, total in state["loss_sums"].items()}
    entry = {"epoch": epoch + 1, "loss": means.get("loss", float("nan")), "batches": state["step"],
             "seconds": round(time.time() - epoch_start, 2), "lr": scheduler.get_last_lr()[0]}
    if len(means) > 1:
        entry["loss_parts"] = means
    if finished_epoch:
        state["epoch"], state["step"], state["loss_sums"] = epoch + 1, 0, {}
    if metrics is not None:
        entry["valid"] = metrics
        if metrics[SELECT_ON] > state["best"]:
            state["best"], state["best_epoch"], state["bad_evals"] = metrics[SELECT_ON], epoch + 1, 0
            save_checkpoint(out / "best.pt", {"model": model.state_dict(), "epoch": epoch + 1, "valid": metrics,
                                              "item_score_weight": metrics.get("item_score_weight"),
                                              "config": dataclasses.asdict(rcfg)})
        elif finished_epoch:
            state["bad_evals"] += 1
            if state["bad_evals"] >= rcfg.patience:
                state["stop_reason"] = "early_stop"
        weight = f" at item-head weight {metrics['item_score_weight']:g}" if "item_score_weight" in metrics else ""
        log.info("epoch %d: loss %.4f, valid %s %.4f%s (best %.4f at epoch %d), %.1fs", epoch + 1, entry["loss"],
                 SELECT_ON, metrics[SELECT_ON], weight, state["best"], state["best_epoch"], entry["seconds"])
    else:
        log.info("epoch %d: loss %.4f, %.1fs", epoch + 1, entry["loss"], entry["seconds"])
    entry["partial"] = not finished_epoch
    state["log"].append(entry)
    if state["stop_reason"] is None and state["epoch"] >= rcfg.epochs:
        state["stop_reason"] = "max_epochs"


def _more_to_train(out: Path, rcfg: RecommenderConfig) -> bool:
    """Whether a finished run with this fingerprint still has budget: it stopped on its time
    budget, or on a time schedule shorter than the one configured now."""
    stop_reason = read_json(out / MANIFEST).get("stop_reason")
    if stop_reason == "time_budget":
        return True
    if stop_reason != "schedule_end" or rcfg.schedule_minutes <= 0:
        return False
    epochs = read_json(out / "train_log.json").get("epochs") or [{}]
    return epochs[-1].get("trained_seconds", 0.0) < 60 * rcfg.schedule_minutes


def _drain(running: dict, state: dict) -> None:
    """Move the device-side loss sums into the (host, checkpointed) epoch totals."""
    for name, total in running.items():
        state["loss_sums"][name] = state["loss_sums"].get(name, 0.0) + float(total)
    running.clear()


def _write_manifest(out: Path, settings: dict, inputs: dict, stop_reason: str, started: float, **extra) -> None:
    write_json(out / MANIFEST, stage_manifest(out.name, settings, inputs, started, stop_reason=stop_reason, **extra))
