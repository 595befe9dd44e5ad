"""ricl: retrieval-augmented in-context phrase grounding on chest X-rays.

``import ricl`` is light: it imports no torch, transformers, vllm or faiss
(a test checks this). Heavy parts load when used.
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

__all__ = [
    "Box",
    "DatasetFormatError",
    "Finding",
    "ImageLoadError",
    "Instance",
    "InvalidBoxError",
    "Prediction",
    "RiclError",
    "Study",
    "UnknownNameError",
    "__version__",
]
