"""ricl: retrieval-augmented in-context phrase grounding on chest X-rays.

``import ricl`` is light: it imports no torch, transformers, vllm or faiss
(a test checks this). Heavy parts load when used: ``from ricl import GroundingAgent``
imports the agent module on first use.
"""

from __future__ import annotations

from ricl.errors import (
    DatasetFormatError,
    ImageLoadError,
    InvalidBoxError,
    RiclError,
    UnknownNameError,
)
from ricl.types import Box, Finding, Instance, Prediction, Study

__version__ = "0.1.0"

# name -> module, imported on first attribute access (PEP 562)
_LAZY = {
    "AgentConfig": "ricl.agent_config",
    "GroundingAgent": "ricl.agent",
    "GroundingQuery": "ricl.agent",
    "GroundingResult": "ricl.agent",
    "load_dataset": "ricl.data.registry",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ricl' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AgentConfig",
    "Box",
    "DatasetFormatError",
    "Finding",
    "GroundingAgent",
    "GroundingQuery",
    "GroundingResult",
    "ImageLoadError",
    "Instance",
    "InvalidBoxError",
    "Prediction",
    "RiclError",
    "Study",
    "UnknownNameError",
    "__version__",
    "load_dataset",
]
