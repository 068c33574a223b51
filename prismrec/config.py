"""Typed configuration: dataclasses per stage, loaded from YAML, overridden from the CLI.

Each stage owns its dataclass (``prismrec/<stage>/config.py``); ``PipelineConfig``
groups them. ``load_config(path, ["tokenizer.epochs=50", ...])`` reads a YAML file
(any subset of the fields) and applies dotted overrides, with errors that name the
offending key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from prismrec.data.config import DataConfig
from prismrec.errors import PrismrecError
from prismrec.features.config import FeatureConfig
from prismrec.recommender.config import RecommenderConfig
from prismrec.tokenizer.config import TokenizerConfig

T = TypeVar("T")


@dataclass
class PipelineConfig:
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    recommender: RecommenderConfig = field(default_factory=RecommenderConfig)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise PrismrecError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except PrismrecError:
                continue
        raise PrismrecError(f"{where}: {value!r} is not a valid {tp}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise PrismrecError(f"{where}: expected a list, got {value!r}")
        (arg,) = typing.get_args(tp)[:1] or (Any,)
        return [_coerce(v, arg, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise PrismrecError(f"{where}: expected one of {typing.get_args(tp)}, got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise PrismrecError(f"{where}: expected true/false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise PrismrecError(f"{where}: expected a number, got {value!r}")
        try:
            out = tp(value)
        except (TypeError, ValueError):
            raise PrismrecError(f"{where}: expected {tp.__name__}, got {value!r}") from None
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise PrismrecError(f"{where}: expected an integer, got {value!r}")
        return out
    if tp is str:
        if not isinstance(value, (str, int, float)):
            raise PrismrecError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from a (partial) mapping; unknown keys are errors."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise PrismrecError(f"{where}: unknown key(s) {sorted(unknown)}; known keys: {sorted(known)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def apply_overrides(cfg: T, overrides: list[str]) -> T:
    """Apply ``section.key=value`` overrides (values parsed as YAML scalars)."""
    data = to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise PrismrecError(f"override {item!r}: expected KEY=VALUE, e.g. recommender.epochs=20")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise PrismrecError(f"override {item!r}: unknown section {part!r}")
            node = node[part]
        if parts[-1] not in node:
            raise PrismrecError(f"override {item!r}: unknown key {key!r}")
        node[parts[-1]] = yaml.safe_load(raw)
    return from_dict(type(cfg), data)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as e:
            raise PrismrecError(f"{path}: cannot read config file ({e.strerror})") from None
        except yaml.YAMLError as e:
            raise PrismrecError(f"{path}: invalid YAML ({e})") from None
        if not isinstance(data, dict):
            raise PrismrecError(f"{path}: expected a mapping of sections at the top level")
    cfg = from_dict(PipelineConfig, data, where=str(path) if path else "config")
    return apply_overrides(cfg, overrides or [])
