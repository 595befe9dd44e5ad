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

``ricl eval --config FILE --set agent.k=5 --set dataset.limit=100`` applies dotted
overrides (values parsed as YAML) before validation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ricl.agent_config import AgentConfig, apply_overrides, read_yaml_mapping, validate_mapping
from ricl.config import ConfigError
from ricl.data.spec import SplitSpec

__all__ = ["SEMANTIC_KEYS", "EvalConfig", "EvalConfigError"]

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
