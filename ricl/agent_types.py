"""What the agent takes and gives: one query (:class:`GroundingQuery`) and one answer
(:class:`GroundingResult`, with everything needed to audit it and its one serialization)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ricl.prompting.messages import Message
from ricl.types import Box, Prediction, PredictionStatus

__all__ = ["GroundingQuery", "GroundingResult", "as_query"]


@dataclass(frozen=True, slots=True)
class GroundingQuery:
    """One query. ``image``: a path or an in-memory image. ``study_id``/``patient_id``
    feed the retriever's leakage guard; ``box`` the ``location`` selector; ``embedding`` a
    precomputed query embedding ``(d,)`` that similarity selectors use instead of encoding
    the image (the image is still what the model sees). ``first_pass``: set by two-pass
    RICL (:mod:`ricl.two_pass`), the first answer's trace; its hull is then ``box``."""

    image: Any
    phrase: str
    k: int | None = None
    embedding: Any = None
    study_id: str | None = None
    patient_id: str | None = None
    box: Box | None = None
    labels: tuple[str, ...] = ()
    query_id: str | None = None
    first_pass: dict[str, Any] | None = None


def as_query(query: GroundingQuery | dict[str, Any]) -> GroundingQuery:
    """A :class:`GroundingQuery` from itself or a mapping of its fields."""
    return query if isinstance(query, GroundingQuery) else GroundingQuery(**query)


@dataclass(frozen=True, slots=True)
class GroundingResult:
    """The answer to one query, with everything needed to audit it."""

    phrase: str
    boxes: tuple[Box, ...]
    status: PredictionStatus
    raw: str
    exemplars: tuple[dict[str, Any], ...] = ()
    messages: tuple[Message, ...] = ()
    prompt_hash: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    n_repaired: int = 0
    n_dropped: int = 0
    error: str | None = None
    query_id: str | None = None
    model: str = ""
    truncated: bool = False  # the answer stopped at max_tokens (finish_reason "length")
    first_pass: dict[str, Any] | None = None  # two-pass RICL: the first answer's trace

    def to_prediction(self, image_id: str) -> Prediction:
        return Prediction(image_id, self.phrase, self.boxes, status=self.status, raw=self.raw)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (boxes as lists, messages with image placeholders, timings in ms to
        the microsecond): the one serialization of a result (evaluation rows build on it)."""
        return {
            "query_id": self.query_id,
            "phrase": self.phrase,
            "boxes": [b.to_list() for b in self.boxes],
            "status": self.status,
            "raw": self.raw,
            "error": self.error,
            "n_repaired": self.n_repaired,
            "n_dropped": self.n_dropped,
            "exemplars": list(self.exemplars),
            "messages": [m.to_dict() for m in self.messages],
            "prompt_hash": self.prompt_hash,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "model": self.model,
            "truncated": self.truncated,
            "first_pass": self.first_pass,
        }
