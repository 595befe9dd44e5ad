"""The one configuration path: YAML reading, ``key=value`` overrides, validation.

Every configuration (agent, evaluation run, experiment grid, LoFi model and encoder
training, encoder ablation, VLM training, index parameters) is read, overridden and
validated here, and every problem raises :class:`ConfigError` (or a subclass such as
``AgentConfigError``) whose message is one line naming the source file and the dotted key:

    eval/configs/x.yaml: invalid agent configuration: agent.k: Input should be ... (got -1)

Overrides are ``dotted.key=value`` strings as the CLI's ``--set`` takes them; values are
parsed as YAML (``k=5`` is an int, ``name=abc`` a string, ``xs=[1, 2]`` a list).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ricl.errors import RiclError

__all__ = [
    "ConfigError",
    "apply_overrides",
    "parse_overrides",
    "read_yaml_mapping",
    "validate_mapping",
]

_M = TypeVar("_M")


class ConfigError(RiclError, ValueError):
    """A configuration is invalid; the one-line message names the source and the key."""


def parse_overrides(
    pairs: Iterable[str] | None, error: type[RiclError] = ConfigError
) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a.b": 1, "c": "x"}`` (values parsed as YAML).

    Raises ``error`` for an item that is not ``key=value`` or whose value is not YAML."""
    import yaml

    out: dict[str, Any] = {}
    for item in pairs or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise error(f"override {item!r} must look like key=value")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise error(f"override {item!r}: the value is not YAML ({_one_line(exc)})") from exc
    return out


def apply_overrides(
    data: Mapping[str, Any],
    overrides: Iterable[str] | Mapping[str, Any] | None,
    error: type[RiclError] = ConfigError,
) -> dict[str, Any]:
    """``data`` (never modified) deep-copied with dotted keys set; ``overrides`` are
    ``key=value`` strings or a ``{dotted key: value}`` mapping. Missing intermediate
    mappings are created; setting below a non-mapping raises ``error``."""
    items = (
        overrides.items()
        if isinstance(overrides, Mapping)
        else parse_overrides(overrides, error).items()
    )
    out = copy.deepcopy(dict(data))
    for dotted, value in items:
        node = out
        *parents, leaf = str(dotted).split(".")
        for name in parents:
            child = node.get(name)
            if child is None:
                child = node[name] = {}
            if not isinstance(child, dict):
                raise error(f"override {dotted}={value!r}: {name!r} is not a mapping")
            node = child
        node[leaf] = value
    return out


def read_yaml_mapping(
    path: str | Path, error: type[RiclError] = ConfigError, what: str = "a configuration"
) -> dict[str, Any]:
    """The mapping held by a YAML file (empty file: ``{}``). Raises ``error`` naming the file
    when it cannot be read, is not YAML, or holds something else than a mapping."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"{p}: cannot read {what} ({_one_line(exc)})") from exc
    if not isinstance(data, dict):
        raise error(f"{p}: {what} is a YAML mapping")
    return data


def validate_mapping(
    cls: type[_M],
    data: Mapping[str, Any],
    source: str,
    error: type[RiclError] = ConfigError,
    what: str = "configuration",
) -> _M:
    """``cls(**data)`` for a pydantic model; a ValidationError becomes ``error`` with one
    line: ``source: invalid what: key.sub: message (got value); other.key: ...``."""
    from pydantic import BaseModel, ValidationError

    if not isinstance(data, Mapping):
        raise error(f"{source}: {what} is a mapping, got {type(data).__name__}")
    try:
        assert issubclass(cls, BaseModel)
        return cls.model_validate(dict(data))  # type: ignore[return-value]
    except ValidationError as exc:
        raise error(f"{source}: invalid {what}: {describe_validation_error(exc)}") from exc


def describe_validation_error(exc: Any) -> str:
    """One line for a pydantic ValidationError: ``dotted.key: message (got value)`` per
    problem, ``; ``-separated."""
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err.get("loc", ())) or "(top level)"
        msg = err.get("msg", "invalid")
        got = err.get("input")
        shown = (
            ""
            if err.get("type") == "missing" or isinstance(got, (dict, list))
            else f" (got {got!r})"
        )
        parts.append(f"{key}: {msg}{shown}")
    return _one_line("; ".join(parts))


def _one_line(value: Any) -> str:
    return " ".join(str(value).split())
