"""The LoFi answer syntax (the location-aware captioning target of ricl's own encoder).

A fenced code block holding ``[[x1,y1,x2,y2],...]``: integers 0..1000 on the LETTERBOXED
square (``side`` 384 by default), sorted by ``(x1, y1, x2, y2)``, no spaces, ``[]`` for none.
The integer rule is :func:`~ricl.boxes.codecs.base.quantize` (round half to even, clamp to
0..1000, zero-size widened by one unit); :func:`format_box_ints` is the single definition the
LoFi training data (``ricl.encoders.lofi.losses.format_box_answer``) also uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ricl.boxes.codecs._parse import Extracted, extract_json
from ricl.boxes.codecs.base import BoxCodec, quantize
from ricl.boxes.transforms import SquareTransform, letterbox
from ricl.types import Box

__all__ = ["LofiCodec", "format_box_ints", "ints_to_text"]

SCALE = 1000


def ints_to_text(ints: Sequence[Sequence[int]]) -> str:
    """``[[x1,y1,x2,y2],...]`` with no spaces, in the given order."""
    return "[" + ",".join("[" + ",".join(str(v) for v in b) + "]" for b in ints) + "]"


def format_box_ints(boxes: Sequence[Sequence[float]]) -> str:
    """Boxes ``(x0, y0, x1, y1)`` in [0, 1] of the square -> ``[[x1,y1,x2,y2],...]`` (sorted).

    Out-of-range values are clamped and swapped corners reordered (see ``quantize``).
    Raises ValueError unless every box has 4 finite numbers.
    """
    return ints_to_text(sorted(quantize(b, SCALE, SCALE) for b in boxes))


@dataclass(frozen=True)
class LofiCodec(BoxCodec):
    """Fenced ``[[x1,y1,x2,y2],...]``, integers 0..1000 on the letterboxed square."""

    name = "lofi"
    description = "LoFi fenced [[x1,y1,x2,y2],...], integers 0-1000 on the letterboxed square"
    no_box_answer = "```\n[]\n```"
    side: int = 384

    def __post_init__(self) -> None:
        if isinstance(self.side, bool) or not isinstance(self.side, int) or self.side <= 0:
            raise ValueError(f"lofi codec: side must be a positive integer, got {self.side!r}")

    @property
    def format_hint(self) -> str:
        return (
            "Answer with a code block holding [[x1,y1,x2,y2],...], integers 0-1000 of the image "
            "width and height, sorted by x1; answer [] if absent."
        )

    def image_transform(self, size: tuple[int, int]) -> SquareTransform:
        return letterbox(size[0], size[1], self.side)

    def format(self, boxes: Sequence[Box], *, image_size: tuple[int, int], phrase: str = "") -> str:
        return f"```\n{ints_to_text(self._encoded(boxes, image_size))}\n```"

    def _extract(self, text: str) -> Extracted:
        return extract_json(text)
