"""Model-free baselines that every grounding result should be compared against.

* ``mean-box``: the mean gold box of the training instances, for every query
  (pixel-blind and phrase-blind: the floor any model must beat).
* ``phrase-knn``: the boxes of the training instance whose phrase is most similar
  (TF-IDF cosine over word uni/bi-grams) — phrase-only, no pixels. Strong when the
  phrase names the location, as many report sentences do.
"""

from __future__ import annotations

from collections.abc import Sequence

from ricl.errors import UnknownNameError
from ricl.types import Box, Instance, Prediction

__all__ = ["BASELINES", "mean_box_predictions", "phrase_knn_predictions", "run_baseline"]


def _require(train: Sequence[Instance]) -> list[Instance]:
    boxed = [i for i in train if i.boxes]
    if not boxed:
        raise ValueError("a baseline needs training instances with at least one gold box")
    return boxed


def mean_box_predictions(
    train: Sequence[Instance], queries: Sequence[Instance]
) -> list[Prediction]:
    """Predict the coordinate-wise mean of all training gold boxes for every query."""
    boxes = [b for i in _require(train) for b in i.boxes]
    n = len(boxes)
    mean = Box(
        sum(b.x_min for b in boxes) / n,
        sum(b.y_min for b in boxes) / n,
        sum(b.x_max for b in boxes) / n,
        sum(b.y_max for b in boxes) / n,
    )
    return [Prediction(q.image_id, q.phrase, (mean,), status="ok") for q in queries]


def phrase_knn_predictions(
    train: Sequence[Instance], queries: Sequence[Instance]
) -> list[Prediction]:
    """Copy the gold boxes of the training instance with the most similar phrase.

    Ties go to the earliest training instance, so the result is deterministic.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    pool = _require(train)
    if not queries:
        return []
    vec = TfidfVectorizer(ngram_range=(1, 2), lowercase=True, sublinear_tf=True)
    train_m = vec.fit_transform([i.phrase for i in pool])
    query_m = vec.transform([q.phrase for q in queries])
    best = (query_m @ train_m.T).toarray().argmax(axis=1)
    return [
        Prediction(q.image_id, q.phrase, pool[j].boxes, status="ok")
        for q, j in zip(queries, best, strict=True)
    ]


BASELINES = {"mean-box": mean_box_predictions, "phrase-knn": phrase_knn_predictions}


def run_baseline(
    name: str, train: Sequence[Instance], queries: Sequence[Instance]
) -> list[Prediction]:
    """Run a baseline by name (``mean-box`` or ``phrase-knn``)."""
    if name not in BASELINES:
        raise UnknownNameError(f"unknown baseline {name!r}; known: {', '.join(sorted(BASELINES))}")
    return BASELINES[name](train, queries)
