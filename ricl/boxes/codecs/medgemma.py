"""MedGemma grounding syntax.

JSON ``[{"box_2d": [y0, x0, y1, x1], "label": "phrase"}, ...]`` -- note the Y-FIRST order --
with integers 0..1000 on the square-PADDED image: the prompt builder letterboxes the original
into a ``side`` square (896 by default) and the coordinates refer to that square. Parsed
boxes are mapped back through the letterbox; parts on the padding are cut off (not counted
as repairs), boxes entirely on the padding are dropped. No box: ``[]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ricl.boxes.codecs._parse import Extracted, extract_json
from ricl.boxes.codecs.base import BoxCodec
from ricl.boxes.codecs.qwen3vl import bbox_2d_json
from ricl.boxes.transforms import SquareTransform, letterbox
from ricl.types import Box

__all__ = ["MedGemmaCodec"]

_KEYS = frozenset({"box_2d"})


@dataclass(frozen=True)
class MedGemmaCodec(BoxCodec):
    """MedGemma JSON ``box_2d`` boxes ``[y0, x0, y1, x1]``, 0..1000 on the letterboxed square."""

    name = "medgemma"
    description = 'MedGemma JSON [{"box_2d": [y0, x0, y1, x1], "label": ...}], 0-1000, letterbox'
    no_box_answer = "[]"
    side: int = 896

    def __post_init__(self) -> None:
        if isinstance(self.side, bool) or not isinstance(self.side, int) or self.side <= 0:
            raise ValueError(f"medgemma codec: side must be a positive integer, got {self.side!r}")

    @property
    def format_hint(self) -> str:
        return (
            'Answer in JSON as [{"box_2d": [y0, x0, y1, x1], "label": "<phrase>"}, ...] with '
            "integers 0-1000 of the image height and width (y first); answer [] if absent."
        )

    def image_transform(self, size: tuple[int, int]) -> SquareTransform:
        return letterbox(size[0], size[1], self.side)

    def format(self, boxes: Sequence[Box], *, image_size: tuple[int, int], phrase: str = "") -> str:
        ints = self._encoded(boxes, image_size)
        return bbox_2d_json([(y0, x0, y1, x1) for x0, y0, x1, y1 in ints], phrase, "box_2d")

    def _decode(self, values: tuple[float, ...], size: tuple[int, int]) -> tuple[float, ...]:
        y0, x0, y1, x1 = values
        return x0 / 1000, y0 / 1000, x1 / 1000, y1 / 1000

    def _extract(self, text: str) -> Extracted:
        return extract_json(text, _KEYS)
