"""Exemplar selectors, by name (a lazy :class:`ricl.registry.Registry` with suggestions).

Every selector is ``fn(retriever, query, k, excluded, seed) -> list[Exemplar]``:
``excluded`` holds the exemplar ids the leakage guard removes, ``seed`` overrides the
retriever's seed (None = the retriever's). Results are de-duplicated by image. A selector
with options (``fused``: :class:`ricl.retrieval.fusion.FusionOptions`) also takes
``options=``; :data:`SELECTOR_OPTIONS` names their option models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ricl.registry import Registry
from ricl.retrieval.errors import QueryError

if TYPE_CHECKING:
    from ricl.retrieval.exemplars import Exemplar
    from ricl.retrieval.retriever import Query, Retriever

__all__ = [
    "SELECTORS",
    "SELECTOR_OPTIONS",
    "fine_grained",
    "label_oracle",
    "location",
    "random_selector",
    "text",
    "validate_selector_options",
]

SELECTORS = Registry(
    "selector",
    {
        "fine-grained": "ricl.retrieval.selectors:fine_grained",
        "location": "ricl.retrieval.selectors:location",
        "text": "ricl.retrieval.selectors:text",
        "random": "ricl.retrieval.selectors:random_selector",
        "label-oracle": "ricl.retrieval.selectors:label_oracle",
        "fused": "ricl.retrieval.fusion:fused",
    },
)

# selectors that take ``options=``: the pydantic model validating them (import path)
SELECTOR_OPTIONS: dict[str, str] = {"fused": "ricl.retrieval.fusion:FusionOptions"}


def validate_selector_options(selector: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """``options`` checked against ``selector``'s option model (defaults filled in).

    Raises ValueError naming the selector: options for a selector without any, or keys /
    values its model rejects (pydantic's message)."""
    import importlib

    if selector not in SELECTOR_OPTIONS:
        if options:
            raise ValueError(
                f"selector {selector!r} takes no options (got {sorted(options)}); "
                f"selectors with options: {sorted(SELECTOR_OPTIONS)}"
            )
        return {}
    from pydantic import ValidationError

    from ricl.config import describe_validation_error

    module, _, name = SELECTOR_OPTIONS[selector].partition(":")
    model = getattr(importlib.import_module(module), name)
    try:
        return dict(model(**(options or {})).model_dump())
    except ValidationError as exc:
        raise ValueError(
            f"selector_options of {selector!r}: {describe_validation_error(exc)}"
        ) from None


def fine_grained(
    r: Retriever, query: Query, k: int, excluded: set[int], seed: int | None = None
) -> list[Exemplar]:
    """Global image embedding of the query image -> nearest exemplar images."""
    return r.search(r.embed(query, "image"), k, excluded, "global")


def location(
    r: Retriever, query: Query, k: int, excluded: set[int], seed: int | None = None
) -> list[Exemplar]:
    """Region embedding of ``query.box`` on the query image -> nearest gold regions; one
    exemplar per image (its best region, in ``matched_region``)."""
    if query.embedding is None and query.box is None:
        raise QueryError("the 'location' selector needs a box: Query(image=..., box=...)")
    return r.search(r.embed(query, "region"), k, excluded, "regions")


def text(
    r: Retriever, query: Query, k: int, excluded: set[int], seed: int | None = None
) -> list[Exemplar]:
    """Text embedding of the phrase -> nearest exemplar images (image-text shared space)."""
    return r.search(r.embed(query, "text"), k, excluded, "global")


def _distinct_images(exemplars: list[Exemplar], k: int) -> list[Exemplar]:
    out: list[Exemplar] = []
    seen: set[str] = set()
    for e in exemplars:
        if e.image_id not in seen:
            seen.add(e.image_id)
            out.append(e)
            if len(out) == k:
                break
    return out


def random_selector(
    r: Retriever, query: Query, k: int, excluded: set[int], seed: int | None = None
) -> list[Exemplar]:
    """k exemplars drawn uniformly without replacement (score None). Reproducible: seeded
    by the seed and the query's ids/image path/phrase, so different queries differ."""
    rng, n = r.rng(query, seed), len(r.exemplars)
    m = min(n, 2 * k + len(excluded) + 8)  # usually enough; else every exemplar, shuffled
    for draw in (rng.choice(n, m, replace=False), rng.permutation(n)):
        pool = [r.exemplars[int(i)] for i in draw if int(i) not in excluded]
        found = _distinct_images(pool, k)
        if len(found) == k or m == n:
            break
    return [e.with_score(None) for e in found]


def label_oracle(
    r: Retriever, query: Query, k: int, excluded: set[int], seed: int | None = None
) -> list[Exemplar]:
    """Exemplars sharing at least one gold label with the query: FOR ABLATIONS ONLY (it
    reads the answer's labels). Score = share of the query's labels the exemplar has;
    ties are broken by image similarity when the query has an image or embedding, else
    by a seeded shuffle. Returns fewer than k when fewer exemplars share a label.

    Raises:
        QueryError: the query carries no labels.
    """
    from ricl.retrieval.ranking import topk_indices

    wanted = {lab for lab in query.labels if lab}
    if not wanted:
        raise QueryError(
            "the 'label-oracle' selector needs the query's gold labels (Query(labels=...) or "
            "--labels); it is an oracle for ablations, not a retriever for real queries"
        )
    ids_sharing = sorted(set().union(*(r.by_label.get(lab, ()) for lab in wanted)) - excluded)
    cands = [r.exemplars[i] for i in ids_sharing]
    if not cands:
        return []
    ids = np.array([e.exemplar_id for e in cands], dtype=np.int64)
    if query.image is not None or query.embedding is not None:
        vec = r.embed(query, "image")
        order = topk_indices(vec[None, :], r.store.vectors("global", ids), len(cands))[0]
    else:
        order = r.rng(query, seed).permutation(len(cands))
    ranked = [cands[int(i)] for i in order]
    overlap = {e.exemplar_id: len(e.labels & wanted) / len(wanted) for e in cands}
    ranked.sort(key=lambda e: -overlap[e.exemplar_id])  # stable: keeps the tie order
    return [e.with_score(overlap[e.exemplar_id]) for e in _distinct_images(ranked, k)]
