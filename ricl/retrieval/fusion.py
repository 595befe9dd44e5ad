"""The ``fused`` selector: image (or region) similarity fused with what the phrase says.

Image similarity alone finds pictures that look alike, not findings like the query's: the
exemplar nearest to a right-upper-lobe nodule may hold only a left effusion. ``fused``
re-ranks a pool of the most similar exemplars by three terms, weights in config::

    selector: fused
    selector_options: {image: 1.0, phrase: 0.5, location: 0.5, pool: 1024}

* ``image``: the similarity that fetched the pool, min-max scaled to [0, 1] within it.
  It is the region similarity when the query has a box (a two-pass first answer, or
  ``location``-style queries), else the global image similarity;
* ``phrase``: the content-word Jaccard similarity of the exemplar's finding sentence to the
  query phrase (:func:`ricl.retrieval.phrases.phrase_similarity`, what the demonstration
  and the ``knn`` backend use to pick the finding);
* ``location``: how well that finding's boxes agree with the phrase's anatomical words
  ("right", "upper", "basal", "bilateral": :mod:`ricl.retrieval.location_words`); 1.0
  when the phrase names no location.

Per exemplar the finding with the best ``phrase * w_phrase + location * w_location`` is
the one demonstrated (``matched_region`` points at it), and the score is
``w_image * image + that``. Reads nothing of the query's answer: only its image, box
(if any) and phrase.

The pool is wide by default (1024) because the phrase and location terms can only pick
what the pool holds: re-ranking the 64 most similar images found findings at the query's
location far less often than re-ranking 1024 (site X, eval/results/vlm_sites.md: the
demonstrated findings' IoU with the query's gold hull 0.23 -> 0.34 on the validation
split at k = 5, and the VLM's union IoU +0.031 [+0.013, +0.050] at k = 3 on 320
instances of a second release). Re-ranking is linear in the pool (word sets, no model
calls): 17.6 ms a query over site X's 649 exemplars on one CPU core, against 1.5 ms for
a pool of 64.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ricl.retrieval.errors import QueryError

if TYPE_CHECKING:
    from ricl.retrieval.exemplars import Exemplar
    from ricl.retrieval.retriever import Query, Retriever

__all__ = ["FusionOptions", "fused"]


class FusionOptions(BaseModel):
    """Weights of the ``fused`` selector (unknown keys rejected). ``pool``: how many of the
    most similar exemplars (distinct images, after the leakage guard) are re-ranked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: float = Field(1.0, ge=0)
    phrase: float = Field(0.5, ge=0)
    location: float = Field(0.5, ge=0)
    pool: int = Field(1024, ge=1, le=4096)

    @model_validator(mode="after")
    def _some_weight(self) -> FusionOptions:
        if self.image == self.phrase == self.location == 0:
            raise ValueError("at least one of image, phrase, location must be > 0")
        return self


def _scaled(scores: list[float]) -> list[float]:
    lo, hi = min(scores), max(scores)
    return [1.0 if hi <= lo else (s - lo) / (hi - lo) for s in scores]


def fused(
    r: Retriever,
    query: Query,
    k: int,
    excluded: set[int],
    seed: int | None = None,
    options: dict[str, Any] | FusionOptions | None = None,
) -> list[Exemplar]:
    """Top-k of a similarity pool re-ranked by phrase and location agreement.

    Returns up to k exemplars, best first, ``score`` = the fused score and
    ``matched_region = (finding position, 0)`` of the demonstrated finding. Raises
    QueryError without a phrase, or when the query has neither image nor embedding.
    """
    from ricl.retrieval.location_words import location_agreement, location_terms
    from ricl.retrieval.phrases import phrase_similarity

    opts = options if isinstance(options, FusionOptions) else FusionOptions(**(options or {}))
    if not query.phrase or not query.phrase.strip():
        raise QueryError("the 'fused' selector needs the query phrase: Query(phrase=...)")
    if query.box is not None and query.embedding is None:
        pool = r.search(r.embed(query, "region"), max(k, opts.pool), excluded, "regions")
    else:
        pool = r.search(r.embed(query, "image"), max(k, opts.pool), excluded, "global")
    if not pool:
        return []
    terms = location_terms(query.phrase)
    image = _scaled([float(e.score or 0.0) for e in pool])
    ranked: list[tuple[float, int, Exemplar]] = []
    for rank, (e, img) in enumerate(zip(pool, image, strict=True)):
        best, best_pos = float("-inf"), 0
        for pos, f in enumerate(e.findings):
            s = opts.phrase * phrase_similarity(query.phrase, f.phrase)
            s += opts.location * location_agreement(f.boxes, terms)
            s -= 0.0 if f.boxes else 1e-6  # a finding with boxes wins ties
            if s > best:
                best, best_pos = s, pos
        score = opts.image * img + best
        ranked.append((score, -rank, e.with_score(score, (best_pos, 0))))
    ranked.sort(key=lambda t: (t[0], t[1]), reverse=True)
    return [e for _, _, e in ranked[:k]]
