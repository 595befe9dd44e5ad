"""How close two finding sentences are: the Jaccard similarity of their content words.

The one phrase similarity of the project: the demonstration picks an exemplar's finding
with it (:mod:`ricl.prompting.demos`), the ``knn`` backend transfers that finding's boxes,
and the ``fused`` selector ranks exemplars by it.
"""

from __future__ import annotations

import re

__all__ = ["phrase_similarity"]

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "in",
        "is",
        "it",
        "of",
        "on",
        "or",
        "the",
        "this",
        "there",
        "to",
        "was",
        "were",
        "with",
        "seen",
        "shows",
        "show",
        "noted",
        "observed",
    ]
)


def _words(text: str) -> frozenset[str]:
    return frozenset(w for w in _WORD.findall(text.lower()) if w not in _STOP)


def phrase_similarity(a: str, b: str) -> float:
    """Jaccard similarity of the content words of two phrases, in [0, 1]."""
    wa, wb = _words(a), _words(b)
    if not wa or not wb:
        return 0.0
    return len(wa & wb) / len(wa | wb)
