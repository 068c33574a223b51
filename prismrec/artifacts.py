"""Run directories: atomic artefacts, per-stage manifests, skip-if-unchanged.

Layout of a run directory (one subdirectory per stage output)::

    RUN_DIR/data/            prepare     (parquet tables + manifest.json)
    RUN_DIR/features/        features    (content/tag/collab embeddings)
    RUN_DIR/tokenizer[-X]/   tokenize    (SIDs, codebooks, quality.json)
    RUN_DIR/models/<name>/   train       (best.pt, last.pt, log)
    RUN_DIR/eval/<name>/     evaluate    (metrics.json, metrics.md)

A stage is built in a hidden temporary directory and renamed into place only when
it finished, so a failure never leaves a half-written stage behind. Its
``manifest.json`` records the config, the fingerprints of its inputs, library
versions and wall time; a stage whose config and inputs did not change is skipped
unless ``force`` is set.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

MANIFEST = "manifest.json"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------------------- atomic files
def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and rename the result onto ``path`` (same directory, atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    text = json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n"
    return atomic_write(path, lambda p: p.write_text(text))


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def _jsonable(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return obj.item()  # numpy / torch scalars
    return obj


# ----------------------------------------------------------------------------- fingerprints
def file_fingerprint(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """BLAKE2b of a file's bytes (inputs of the prepare stage)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint_settings(cfg: Any, exclude: tuple[str, ...] = (), added_options: dict[str, Any] | None = None) -> dict:
    """A config dataclass as the settings a stage's fingerprint covers.

    ``exclude``: fields that never change the artefact (device, time budgets).
    ``added_options``: options added after artefacts were built, with their off value; they
    enter the fingerprint only when switched on, so adding an option does not make every
    existing stage stale."""
    added = added_options or {}
    return {k: v for k, v in asdict(cfg).items()
            if k not in exclude and not (k in added and v == added[k])}


def config_fingerprint(config: Any) -> str:
    text = json.dumps(_jsonable(config), sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def stage_fingerprint(stage_path: str | os.PathLike) -> str:
    """Fingerprint of a finished stage: its manifest's own fingerprint (config + inputs)."""
    manifest = Path(stage_path) / MANIFEST
    if not manifest.exists():
        return "missing"
    return read_json(manifest).get("fingerprint", "missing")


def evaluation_inputs(model_stage: str | os.PathLike) -> dict[str, str]:
    """What a model's evaluation depends on: the model stage and its best checkpoint's bytes (a
    resumed training keeps its config but may select a new best)."""
    return {"model": stage_fingerprint(model_stage), "checkpoint": file_fingerprint(Path(model_stage) / "best.pt")}


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("prismrec", "torch", "numpy", "pandas", "pyarrow", "scikit-learn", "sentence-transformers"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


# ----------------------------------------------------------------------------- stages
def stage_manifest(name: str, config: Any, inputs: dict[str, str], started: float, **extra: Any) -> dict[str, Any]:
    """What a stage's ``manifest.json`` records (``build_stage`` writes it; so does the resumable trainer)."""
    return {
        "stage": name,
        "fingerprint": stage_fingerprint_for(config, inputs),
        "config": config,
        "inputs": inputs,
        "versions": library_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_seconds": round(time.time() - started, 3),
        **extra,
    }


def is_current(final: Path, fingerprint: str) -> bool:
    manifest = final / MANIFEST
    if not manifest.exists():
        return False
    try:
        return read_json(manifest).get("fingerprint") == fingerprint
    except (OSError, json.JSONDecodeError):
        return False


@contextlib.contextmanager
def build_stage(
    final: str | os.PathLike,
    *,
    config: Any,
    inputs: dict[str, str],
    extra: dict[str, Any] | None = None,
    started: float | None = None,
) -> Iterator[Path]:
    """Build a stage directory atomically.

    Yields a temporary directory next to ``final``; write every artefact there.
    On success a manifest is added and the directory replaces ``final``; on any
    exception the temporary directory is removed and ``final`` is untouched.
    ``inputs`` maps input names to fingerprints (see ``file_fingerprint`` /
    ``stage_fingerprint``). ``started``: ``time.time()`` when the stage's work began, for the
    manifest's ``wall_seconds`` (default: entering the block, right for a stage computed inside it).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".building", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
    start = time.time() if started is None else started
    try:
        yield tmp
        write_json(tmp / MANIFEST, stage_manifest(final.name, config, inputs, start, **(extra or {})))
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def stage_fingerprint_for(config: Any, inputs: dict[str, str]) -> str:
    """The fingerprint ``build_stage`` would record for this config and these inputs."""
    return config_fingerprint({"config": config, "inputs": inputs})


def require_stage(run_dir: str | os.PathLike, name: str, hint: str) -> Path:
    """Path of a finished stage, or a clear error telling which command makes it."""
    from prismrec.errors import MissingStageError

    path = Path(run_dir) / name
    if not (path / MANIFEST).exists():
        raise MissingStageError(f"{path}: stage '{name}' not found in the run directory; run `{hint}` first")
    return path
