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

__all__ = ["BACKENDS", "create_backend"]

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
