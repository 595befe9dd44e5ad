"""Configuration of ``ricl train-vlm``, validated in one place (unknown keys rejected).

out_dir: eval/runs/vlm_phantom
sources:                       # training pools: a release + its exemplar index
  - {root: ricl-demo/phantom, index: ricl-demo/indexes/phantom-lofi}
model: {hidden_size: 192, num_layers: 4, num_heads: 3, vision_depth: 4, vision_embed_dim: 128}
episodes: {k_max: 3, k_weights: [1, 1, 1, 1], selectors: {location: 2, fine-grained: 1, random: 1}}
strategy: k-shot
codec: qwen2vl
steps: 1500
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ricl.agent_config import apply_overrides, read_yaml_mapping, validate_mapping
from ricl.config import ConfigError
from ricl.data.spec import DatasetSpec
from ricl_apps.train.vlm.conventions import ConventionSpec

__all__ = ["EpisodeSpec", "ModelSpec", "SourceSpec", "VLMTrainConfig", "VLMTrainConfigError"]


class VLMTrainConfigError(ConfigError):
    """A VLM training configuration is invalid (the file and key are named)."""


class SourceSpec(DatasetSpec):
    """A training pool: a release (a :class:`~ricl.data.spec.DatasetSpec`: ``name``,
    ``root``, reader options), the ``split`` drawn from, and an ``index`` of that split
    (exemplars of an episode come from the query's own pool: one site, one index)."""

    index: str
    split: str = "train"


class ModelSpec(BaseModel):
    """Qwen2-VL architecture sizes (see :func:`ricl.vlm.tiny_qwen2vl.build_tiny_qwen2vl`).
    ``num_heads`` must divide ``hidden_size`` into heads of 64 for vLLM's CPU attention."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden_size: int = 192
    num_layers: int = 4
    num_heads: int = 3
    vision_depth: int = 4
    vision_embed_dim: int = 128
    vocab_size: int = 1024
    image_side: int = 112  # images are sent at <= this side: (side / 28)^2 image tokens
    initializer_range: float = 0.02


class EpisodeSpec(BaseModel):
    """How episodes are drawn: k from 0..k_max with ``k_weights``; one selector per episode
    with ``selectors`` weights (``location`` uses the query's gold box: what a
    location-aware retriever would find; ``fine-grained`` the image embedding;
    ``fused`` the agent's default selector (image similarity re-ranked by the phrase and
    its location words: what evaluation shows); ``same-finding`` exemplars with the
    query's label and location from the annotations:
    informative demonstrations; ``self`` the query's own study first, then same-finding
    ones: a copy curriculum. Both read the answer: training only, never at evaluation).
    ``conventions``: per-episode annotation conventions shared by the exemplars and the
    target (:class:`~ricl_apps.train.vlm.conventions.ConventionSpec`); None: off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k_max: int = Field(3, ge=0, le=8)
    k_weights: list[float] | None = None
    selectors: dict[str, float] = Field(
        default_factory=lambda: {"location": 2.0, "fine-grained": 1.0, "random": 1.0}
    )
    conventions: ConventionSpec | None = None

    @model_validator(mode="after")
    def _weights(self) -> EpisodeSpec:
        if self.k_weights is not None and len(self.k_weights) != self.k_max + 1:
            raise ValueError(f"k_weights needs k_max + 1 = {self.k_max + 1} values")
        known = {"location", "fine-grained", "fused", "random", "same-finding", "self"}
        if not self.selectors or set(self.selectors) - known:
            raise ValueError(f"selectors must be a non-empty subset of {sorted(known)}")
        return self


class VLMTrainConfig(BaseModel):
    """One training run of the project's grounding VLM."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    out_dir: str
    sources: list[SourceSpec]
    init_from: str | None = None  # start from a trained model directory (its tokenizer too)
    model: ModelSpec = Field(default_factory=ModelSpec)
    episodes: EpisodeSpec = Field(default_factory=EpisodeSpec)
    strategy: str = "k-shot"
    codec: str = "qwen2vl"
    steps: int = Field(1500, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = 0.01
    warmup_steps: int = 50
    seed: int = 0
    log_every: int = 25
    checkpoint_every: int = 250
    threads: int | None = None
    workers: int = Field(0, ge=0)  # DataLoader processes building batches (0: in the loop)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> VLMTrainConfig:
        data = read_yaml_mapping(path, VLMTrainConfigError, "a VLM training configuration")
        return cls.load(apply_overrides(data, overrides or []), str(path))

    @classmethod
    def load(cls, data: dict[str, Any], source: str = "config") -> VLMTrainConfig:
        return validate_mapping(cls, data, source, VLMTrainConfigError,
                                "VLM training configuration")  # fmt: skip
