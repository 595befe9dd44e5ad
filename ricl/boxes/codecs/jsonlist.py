"""Plain JSON box lists: ``[[x_min, y_min, x_max, y_max], ...]``, normalized floats.

The canonical frame itself (original image, no transform), written with 4 decimals
(a box narrower than 1e-4 after rounding is widened by 1e-4). No box: ``[]``.
Registered as ``json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from ricl.boxes.codecs._parse import Extracted, extract_json
from ricl.boxes.codecs.base import BoxCodec
from ricl.types import Box

__all__ = ["JsonCodec"]

_UNITS = 10_000  # 4 decimals: quantize on a 0..10000 grid, write i / 10000


@dataclass(frozen=True)
class JsonCodec(BoxCodec):
    """``[[x_min, y_min, x_max, y_max], ...]`` normalized to the original image."""

    name = "json"
    description = "JSON [[x_min, y_min, x_max, y_max], ...], normalized floats (4 decimals)"
    no_box_answer = "[]"

    @property
    def format_hint(self) -> str:
        return (
            "Answer with a JSON list [[x_min, y_min, x_max, y_max], ...] of numbers between 0 "
            "and 1 relative to the image width and height; answer [] if absent."
        )

    def format(self, boxes: Sequence[Box], *, image_size: tuple[int, int], phrase: str = "") -> str:
        ints = self._encoded(boxes, image_size)
        return json.dumps([[v / _UNITS for v in b] for b in ints])

    def _scale(self, size: tuple[int, int]) -> tuple[int, int]:
        return _UNITS, _UNITS

    def _decode(self, values: tuple[float, ...], size: tuple[int, int]) -> tuple[float, ...]:
        return values

    def _extract(self, text: str) -> Extracted:
        return extract_json(text)
