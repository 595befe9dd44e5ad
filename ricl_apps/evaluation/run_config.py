"""The configuration of one evaluation run, validated in one place (unknown keys rejected).

    run_id: phantom-knn              # default: the config file's stem
    runs_dir: eval/runs
    dataset: {name: phantom, root: data/phantom, split: test, limit: null}  # ricl.data.spec.SplitSpec
    agent:   {index: indexes/phantom-lofi, strategy: k-shot, k: 3, codec: qwen2vl,
              backend: openai, backend_options: {base_url: http://127.0.0.1:8000/v1}}
    concurrency: 4                   # queries in flight
    max_consecutive_failures: 8      # transport failures in a row before the run stops
    query_box: none                  # gold: give the retriever the gold boxes' hull
                                     # (ORACLE, for the `location` selector's ablations)
    engine: {name: local}            # or ray: see EngineConfig (how, not what: a run made
                                     # with one engine resumes with another)

``ricl eval --config FILE --set agent.k=5 --set dataset.limit=100`` applies dotted
overrides (values parsed as YAML) before validation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ricl.agent_config import AgentConfig, apply_overrides, read_yaml_mapping, validate_mapping
from ricl.config import ConfigError
from ricl.data.spec import SplitSpec

__all__ = ["SEMANTIC_KEYS", "EngineConfig", "EvalConfig", "EvalConfigError", "RayLLMConfig"]

# what must not change between a run and its --resume (the rest is how, not what)
SEMANTIC_KEYS = ("dataset", "agent", "query_box")
# backend options about transport, not about what is answered (a server on another port)
TRANSPORT_OPTIONS = (
    "base_url",
    "api_key",
    "timeout_s",
    "max_retries",
    "max_concurrency",
    "cache_dir",
)


class EvalConfigError(ConfigError):
    """An evaluation configuration is invalid; the message names the file and key."""


class RayLLMConfig(BaseModel):
    """``ray.data.llm``: Ray Data starts vLLM replicas itself (GPU nodes with vLLM), built
    with ``vLLMEngineProcessorConfig`` and ``build_processor`` (``build_llm_processor`` on
    older Ray). The prompts are the agent's own (retrieval and rendering in Ray actors that
    load the index once each); the answers are parsed by the agent's codec."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_source: str  # a local checkpoint directory or hub id, as for `vllm serve`
    concurrency: int = Field(1, ge=1)  # vLLM replicas
    batch_size: int = Field(16, ge=1)  # rows per engine call
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)  # e.g. max_model_len
    accelerator_type: str | None = None  # e.g. H100
    sampling_params: dict[str, Any] = Field(default_factory=dict)  # beside temperature/max_tokens


class EngineConfig(BaseModel):
    """Where the queries are answered.

    - ``local`` (default): this process, ``concurrency`` queries in flight.
    - ``ray``: Ray Data actors (``actors_per_endpoint`` per endpoint, or ``actors`` for
      backends without an endpoint such as ``knn``/``hf``), each loading the index once and
      answering ``batch_size`` queries at a time concurrently; ``endpoints`` are the base URLs
      of OpenAI-compatible servers (several ``vllm serve`` replicas), each actor bound to one.
      ``llm`` instead lets Ray Data start the vLLM replicas (``ray.data.llm``).
      ``address``: the Ray cluster (None: ``RAY_ADDRESS`` or a local one).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "local"
    endpoints: list[str] = Field(default_factory=list)
    actors_per_endpoint: int = Field(1, ge=1)
    actors: int | None = Field(None, ge=1)
    batch_size: int = Field(8, ge=1)
    num_cpus: float = Field(0.25, gt=0)  # per actor: HTTP clients wait more than they compute
    address: str | None = None
    llm: RayLLMConfig | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        from ricl.errors import UnknownNameError
        from ricl_apps.evaluation.engines import ENGINES

        try:
            ENGINES.get(name) if name not in ENGINES else None
        except UnknownNameError as exc:  # its message lists close and known names
            raise ValueError(str(exc).strip("'\"")) from None
        return name

    @model_validator(mode="after")
    def _consistent(self) -> EngineConfig:
        if self.name == "local" and (self.endpoints or self.llm or self.actors):
            raise ValueError("endpoints, actors and llm are options of engine.name: ray")
        if self.endpoints and self.llm:
            raise ValueError(
                "give either endpoints (servers you run) or llm (Ray starts vLLM), not both"
            )
        return self


class EvalConfig(BaseModel):
    """One evaluation run: a dataset split, an agent, and how to run it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str | None = None
    runs_dir: str = "eval/runs"
    dataset: SplitSpec
    agent: AgentConfig
    query_box: Literal["none", "gold"] = "none"
    concurrency: int = Field(4, ge=1, le=256)
    max_consecutive_failures: int = Field(8, ge=1)
    rodeo: bool = True
    report: bool = True
    report_max_instances: int | None = Field(500, ge=1)
    engine: EngineConfig = Field(default_factory=EngineConfig)

    @model_validator(mode="after")
    def _engine_fits_backend(self) -> EvalConfig:
        if self.engine.endpoints and self.agent.backend != "openai":
            raise ValueError(
                f"engine.endpoints are OpenAI-compatible servers; agent.backend is "
                f"{self.agent.backend!r} (use engine.actors for it, or backend: openai)"
            )
        if self.engine.llm is not None and self.agent.first_pass is not None:
            raise ValueError(
                "agent.first_pass (two-pass RICL) runs with engine.endpoints or the local "
                "engine, not engine.llm (its prompts are rendered before any answer exists)"
            )
        return self

    @property
    def run_dir(self) -> Path:
        if not self.run_id:
            raise EvalConfigError("the run needs a run_id (set run_id: or --set run_id=...)")
        return Path(self.runs_dir) / self.run_id

    def semantic(self) -> dict[str, Any]:
        """The part of the config that decides the predictions (compared on resume);
        transport options of the backend (``TRANSPORT_OPTIONS``) are left out."""
        data = self.model_dump(mode="json")
        options = data["agent"]["backend_options"]
        for key in TRANSPORT_OPTIONS:
            options.pop(key, None)
        return {k: data[k] for k in SEMANTIC_KEYS}

    @classmethod
    def load(cls, data: dict[str, Any], source: str = "config") -> EvalConfig:
        return validate_mapping(cls, data, source, EvalConfigError, "evaluation configuration")

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> EvalConfig:
        """Read ``path`` (YAML), apply ``key=value`` overrides; ``run_id`` defaults to the
        file's stem."""
        data = apply_overrides(
            read_yaml_mapping(path, EvalConfigError, "an evaluation configuration"), overrides or []
        )
        if not data.get("run_id"):
            data["run_id"] = Path(path).stem
        return cls.load(data, str(path))
