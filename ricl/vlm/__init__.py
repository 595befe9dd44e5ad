"""VLM backends, chosen by name from a lazy registry (none imports its library until used).

* ``openai``: any OpenAI-compatible server (``vllm serve``), async with a concurrency limit;
* ``vllm``: in-process ``vllm.LLM`` chat for offline batch runs;
* ``hf``: an in-process transformers image-text-to-text model;
* ``knn``: no VLM, box transfer from the retrieved exemplars (the embedded default).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from ricl.registry import Registry
from ricl.vlm.errors import VLMConfigError

if TYPE_CHECKING:
    from ricl.vlm.base import VLMBackend

__all__ = ["BACKENDS", "EMBEDDED_VLMS", "create_backend", "resolve_model"]

# models shipped with ricl (package data), loadable by name: see ricl/assets/vlm/README.md
EMBEDDED_VLMS = ("phantom-qwen2vl", "phantom-qwen2vl-ricl")


def resolve_model(name_or_path: str) -> str:
    """An embedded VLM's directory for its name (unless a path of that name exists), else
    ``name_or_path`` unchanged (a local directory or hub id)."""
    from pathlib import Path

    if name_or_path in EMBEDDED_VLMS and not Path(name_or_path).exists():
        return str(Path(__file__).resolve().parents[1] / "assets" / "vlm" / name_or_path)
    return name_or_path


BACKENDS = Registry(
    "VLM backend",
    {
        "openai": "ricl.vlm.openai:OpenAIBackend",
        "vllm": "ricl.vlm.vllm_offline:VLLMBackend",
        "hf": "ricl.vlm.hf:HFBackend",
        "knn": "ricl.vlm.knn:KNNBackend",
    },
)


def create_backend(name: str, **options: Any) -> VLMBackend:
    """Build the backend ``name`` with ``options`` (its constructor's keyword arguments).

    Raises UnknownNameError (close names suggested) or VLMConfigError for an option the
    backend does not take (the accepted ones are listed).
    """
    cls = BACKENDS.get(name)
    params = inspect.signature(cls.__init__).parameters
    accepted = [p for p in params if p != "self"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise VLMConfigError(
            f"backend {name!r} does not take {', '.join(unknown)}; it takes "
            f"{', '.join(accepted) or 'no options'}"
        )
    return cls(**options)
