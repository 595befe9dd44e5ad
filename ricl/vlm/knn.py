"""``knn``: no VLM. Transfer the boxes of the retrieved exemplar finding that best matches.

A retrieval-only baseline (and the embedded default until a real VLM is configured):
among the prompt's demonstrations, take the finding with the highest phrase similarity
to the query (ties: the more similar exemplar image), and answer its boxes, in the
canonical frame carried over to the query image, written in the request's codec. The
answer then goes through the same codec parse as a VLM's, so the whole path is exercised.
No demonstrations (zero-shot), or a best similarity below ``min_similarity``: the
codec's "no box" answer.
"""

from __future__ import annotations

import time
from typing import Any

from ricl.prompting.messages import codec_frame
from ricl.vlm.base import Generation, VLMBackend, VLMRequest
from ricl.vlm.errors import VLMConfigError

__all__ = ["KNNBackend"]


class KNNBackend(VLMBackend):
    """Box transfer from the best-matching exemplar finding (see the module docstring)."""

    name = "knn"

    def __init__(self, min_similarity: float = 0.0) -> None:
        if not 0.0 <= min_similarity <= 1.0:
            raise VLMConfigError(f"min_similarity must be in [0, 1], got {min_similarity}")
        self.min_similarity = float(min_similarity)

    def generate(self, request: VLMRequest) -> Generation:
        t0 = time.perf_counter()
        demos = request.prompt.demos
        boxes: tuple[Any, ...] = ()
        if demos:
            best = max(
                demos,
                key=lambda d: (
                    d.similarity,
                    d.exemplar.score if d.exemplar.score is not None else float("-inf"),
                ),
            )
            if best.similarity >= self.min_similarity:
                boxes = best.finding.boxes
        codec = request.codec
        text = codec.format(
            boxes, image_size=codec_frame(codec, request.prompt.query), phrase=request.phrase
        )
        return Generation(text, "knn", time.perf_counter() - t0)

    def settings(self) -> dict[str, Any]:
        return {"backend": self.name, "min_similarity": self.min_similarity}
