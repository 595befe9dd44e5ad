"""The grounding agent's configuration, validated in one place (unknown keys rejected).

    index: indexes/phantom            # an index folder (None: zero-shot only)
    strategy: k-shot                  # prompts/<name>.yaml, or a path
    k: 3
    selector: fine-grained            # fine-grained | location | text | random | label-oracle
    codec: qwen2vl                    # the target VLM family's box format
    backend: openai                   # openai | vllm | hf | knn
    backend_options: {base_url: http://127.0.0.1:8000/v1, max_concurrency: 8}

Loaded from YAML with :meth:`AgentConfig.from_yaml`; ``overrides`` take dotted keys
(``backend_options.base_url=...``) the way the CLI's ``--set`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ricl.errors import RiclError
from ricl.prompting.strategies import StrategyOptions

_M = TypeVar("_M", bound=BaseModel)

__all__ = ["AgentConfig", "AgentConfigError"]


class AgentConfigError(RiclError, ValueError):
    """An agent configuration is invalid; the message names the file and the key."""


class AgentConfig(BaseModel):
    """Everything that decides what the agent sends and how it reads the answer.

    ``max_image_side``: images are resized (after the codec's square transform) so their
    longer side is at most this, bounding image tokens; None sends them at full size.
    ``seed``: the retriever's seed (``random`` selector).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: str | None = None
    encoder: str | None = None
    images_root: str | None = None
    selector: str = "fine-grained"
    strategy: str = "k-shot"
    strategy_options: StrategyOptions = Field(default_factory=StrategyOptions)
    k: int = Field(3, ge=0, le=64)
    codec: str = "qwen2vl"
    codec_options: dict[str, Any] = Field(default_factory=dict)
    backend: str = "knn"
    backend_options: dict[str, Any] = Field(default_factory=dict)
    max_image_side: int | None = Field(512, ge=16)
    seed: int = 0
    allow_same_patient: bool = False

    @model_validator(mode="after")
    def _index_when_exemplars(self) -> AgentConfig:
        if self.index is None and self.k > 0 and self.strategy != "zero-shot":
            raise ValueError(
                f"strategy {self.strategy!r} with k={self.k} needs an index (index: PATH); "
                "use strategy: zero-shot or k: 0 without one"
            )
        return self

    @classmethod
    def load(cls, data: dict[str, Any], source: str = "config") -> AgentConfig:
        """Validate a mapping. Raises AgentConfigError naming ``source`` and the keys."""
        return validate_mapping(cls, data, source, AgentConfigError, "agent configuration")

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> AgentConfig:
        """Read a YAML file (relative ``index``/``images_root`` resolve against the current
        directory) and apply ``key=value`` overrides (values parsed as YAML)."""
        data = read_yaml_mapping(path, AgentConfigError, "an agent configuration")
        return cls.load(apply_overrides(data, overrides or []), str(path))

    def with_overrides(self, overrides: list[str]) -> AgentConfig:
        return self.load(apply_overrides(self.model_dump(), overrides), "overrides")


def validate_mapping(cls: type[_M], data: dict[str, Any], source: str, error: type[RiclError],
                     what: str) -> _M:  # fmt: skip
    """``cls(**data)``; a pydantic ValidationError becomes ``error`` naming ``source``, what
    was being read (``what``) and the offending keys."""
    try:
        return cls(**data)
    except ValidationError as exc:
        raise error(f"{source}: invalid {what}: {exc}") from exc


def read_yaml_mapping(path: str | Path, error: type[RiclError], what: str) -> dict[str, Any]:
    """The mapping held by a YAML file (empty file: ``{}``). Raises ``error`` naming the file
    when it cannot be read, is not YAML, or holds something else than ``what`` (a mapping)."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"{p}: cannot read {what} ({exc})") from exc
    if not isinstance(data, dict):
        raise error(f"{p}: {what} is a YAML mapping")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``["k=5", "backend_options.base_url=http://..."]`` applied to a deep copy of ``data``
    (``data`` is never modified; missing intermediate mappings are created)."""
    import copy

    import yaml

    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise AgentConfigError(f"override {item!r} must look like key=value")
        value = yaml.safe_load(raw) if raw.strip() else None
        node = out
        *parents, leaf = key.strip().split(".")
        for name in parents:
            child = node.setdefault(name, {})
            if child is None:
                child = node[name] = {}
            if not isinstance(child, dict):
                raise AgentConfigError(f"override {item!r}: {name!r} is not a mapping")
            node = child
        node[leaf] = value
    return out
