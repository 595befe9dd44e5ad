"""The exemplar index and retriever.

``build_index`` embeds a data set's exemplars into an on-disk FAISS index
(:mod:`ricl.retrieval.store`); ``Retriever`` returns the k exemplars for a query with
leakage guards on by default. Attributes load lazily, so importing this package imports
neither faiss nor torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "SELECTORS",
    "Exemplar",
    "ExemplarFinding",
    "IndexConfig",
    "Manifest",
    "Query",
    "Retriever",
    "build_index",
    "load_index",
]

_WHERE = {
    "SELECTORS": "ricl.retrieval.selectors",
    "Exemplar": "ricl.retrieval.exemplars",
    "ExemplarFinding": "ricl.retrieval.exemplars",
    "IndexConfig": "ricl.retrieval.store",
    "Manifest": "ricl.retrieval.store",
    "Query": "ricl.retrieval.retriever",
    "Retriever": "ricl.retrieval.retriever",
    "build_index": "ricl.retrieval.build",
    "load_index": "ricl.retrieval.store",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'ricl.retrieval' has no attribute {name!r}")
