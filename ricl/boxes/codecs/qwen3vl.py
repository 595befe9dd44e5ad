"""Qwen3-VL grounding syntax.

JSON ``[{"bbox_2d": [x1, y1, x2, y2], "label": "phrase"}, ...]`` with integers 0..1000
relative to the original image (no transform). No box: ``[]``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from ricl.boxes.codecs._parse import Extracted, extract_json
from ricl.boxes.codecs.base import BoxCodec
from ricl.types import Box

__all__ = ["Qwen3VLCodec", "bbox_2d_json"]

BBOX_KEYS = frozenset({"bbox_2d", "bbox"})


def bbox_2d_json(ints: Sequence[Sequence[int]], phrase: str, key: str = "bbox_2d") -> str:
    """``[{"<key>": [...], "label": phrase}, ...]`` (``[]`` for none), one line."""
    return json.dumps([{key: list(b), "label": phrase} for b in ints], ensure_ascii=False)


@dataclass(frozen=True)
class Qwen3VLCodec(BoxCodec):
    """Qwen3-VL JSON ``bbox_2d`` boxes, 0..1000 relative to the original image."""

    name = "qwen3vl"
    description = 'Qwen3-VL JSON [{"bbox_2d": [x1, y1, x2, y2], "label": ...}], integers 0-1000'
    no_box_answer = "[]"

    @property
    def format_hint(self) -> str:
        return (
            'Answer in JSON as [{"bbox_2d": [x1, y1, x2, y2], "label": "<phrase>"}, ...] with '
            "integers 0-1000 relative to the image width and height; answer [] if absent."
        )

    def format(self, boxes: Sequence[Box], *, image_size: tuple[int, int], phrase: str = "") -> str:
        return bbox_2d_json(self._encoded(boxes, image_size), phrase)

    def _extract(self, text: str) -> Extracted:
        return extract_json(text, BBOX_KEYS)
