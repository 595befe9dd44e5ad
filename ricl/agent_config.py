"""The grounding agent's configuration, validated in one place (unknown keys rejected).

    index: indexes/phantom            # an index folder (None: zero-shot only)
    strategy: k-shot                  # prompts/<name>.yaml, or a path
    k: 3
    selector: fine-grained            # fine-grained | location | text | fused | random | label-oracle
    selector_options: {}              # fused: {image: 1.0, phrase: 0.5, location: 0.5, pool: 1024}
    first_pass: null                  # two-pass RICL: {backend: knn, selector: fine-grained, k: 3}
    codec: qwen2vl                    # the target VLM family's box format
    backend: openai                   # openai | vllm | hf | knn
    backend_options: {base_url: http://127.0.0.1:8000/v1, max_concurrency: 8}

Loaded from YAML with :meth:`AgentConfig.from_yaml`; ``overrides`` take dotted keys
(``backend_options.base_url=...``) the way the CLI's ``--set`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ricl.config import ConfigError, apply_overrides, read_yaml_mapping, validate_mapping
from ricl.prompting.strategies import StrategyOptions

# re-exported: the apps' configs read, override and validate through ricl.config
__all__ = [
    "AgentConfig",
    "AgentConfigError",
    "FirstPassConfig",
    "apply_overrides",
    "read_yaml_mapping",
    "validate_mapping",
]


class AgentConfigError(ConfigError):
    """An agent configuration is invalid; the message names the file and the key."""


# selectors that read the query's box: what a first pass's provisional box is for
BOX_SELECTORS = frozenset({"location", "fused"})


def _fill(config: BaseModel, options: dict[str, Any]) -> None:
    """Record the selector's effective options (defaults filled in) on a frozen config, so
    a saved config (an eval run's config.yaml) says what ran: a later change of a
    default makes the run's configuration differ instead of silently reusing it."""
    object.__setattr__(config, "selector_options", options)


class FirstPassConfig(BaseModel):
    """Two-pass RICL (location-conditioned retrieval, the ALC-ITR idea).

    A first answer gives a provisional box: ``backend: knn`` transfers the boxes of the
    best-matching exemplar among ``k`` found by ``selector`` (no model call); ``backend:
    agent`` asks the agent's own model (``k: 0`` zero-shot, else ``k`` exemplars by
    ``selector``). The hull of its boxes becomes the query's box, and the second pass
    retrieves with the agent's ``selector`` (``location`` or ``fused``, which read the
    box) and answers. A first answer without boxes: the second pass retrieves with
    ``fallback_selector``. A query that already has a box (``query_box: gold``) skips the
    first pass.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["knn", "agent"] = "knn"
    selector: str = "fine-grained"
    selector_options: dict[str, Any] = Field(default_factory=dict)
    k: int = Field(3, ge=0, le=64)
    fallback_selector: str = "fine-grained"

    @model_validator(mode="after")
    def _sound(self) -> FirstPassConfig:
        from ricl.retrieval.selectors import validate_selector_options

        if self.backend == "knn" and self.k == 0:
            raise ValueError("first_pass.backend knn needs k >= 1 (it transfers exemplar boxes)")
        for key in ("selector", "fallback_selector"):
            if getattr(self, key) == "location":
                raise ValueError(f"first_pass.{key} cannot be 'location': the query has no box yet")
        _fill(self, validate_selector_options(self.selector, self.selector_options))
        return self


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
    selector_options: dict[str, Any] = Field(default_factory=dict)
    first_pass: FirstPassConfig | None = None
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
        from ricl.retrieval.selectors import validate_selector_options

        _fill(self, validate_selector_options(self.selector, self.selector_options))
        if self.first_pass is not None:
            if self.selector not in BOX_SELECTORS:
                raise ValueError(
                    f"first_pass gives the second pass a box; selector {self.selector!r} does "
                    f"not read one (use one of {sorted(BOX_SELECTORS)})"
                )
            if self.index is None or self.k == 0 or self.strategy == "zero-shot":
                raise ValueError("first_pass needs a second pass with exemplars (index, k >= 1)")
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
        return cls.load(apply_overrides(data, overrides or [], AgentConfigError), str(path))

    def with_overrides(self, overrides: list[str]) -> AgentConfig:
        data = apply_overrides(self.model_dump(), overrides, AgentConfigError)
        return self.load(data, "overrides")
