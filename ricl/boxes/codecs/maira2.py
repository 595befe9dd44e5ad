"""MAIRA-2 grounding syntax.

``<obj>phrase<box><xNN><yNN><xNN><yNN></box></obj>``: 100 bins (0..99) per axis on the
CENTRE-CROPPED square the model sees (``center_crop(w, h, side)``, ``side`` 518 by default).
A coordinate ``v`` in [0, 1] of the square is written as bin ``min(int(v * 100), 99)`` and a
bin ``b`` is read back as its centre ``(b + 0.5) / 100``; a box whose corners share a bin is
widened to the next bin. The image_transform is the centre crop, so parsed boxes always
lie inside the cropped region of the original image.

Boxes are cut to the crop when formatted; a box entirely outside the crop is silently left
out of the answer (it is counted nowhere, and if every box is outside, the answer is the
no-box answer). Callers that care should compare against ``box_to_square`` of their boxes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ricl.boxes.codecs._parse import NUMBER, Extracted, tag_contents
from ricl.boxes.codecs.base import BoxCodec, bin_box
from ricl.boxes.transforms import SquareTransform, center_crop
from ricl.types import Box

__all__ = ["Maira2Codec"]

BINS = 100
_OPEN = re.compile(r"<\s*box\s*>", re.IGNORECASE)
_CLOSE = re.compile(r"<\s*/\s*box\s*>", re.IGNORECASE)
_TOKEN = re.compile(rf"<\s*([xy])\s*({NUMBER})\s*>", re.IGNORECASE)
_TOKENS_PREFIX = re.compile(rf"(?:\s*<\s*[xy]\s*{NUMBER}\s*>)+", re.IGNORECASE)


@dataclass(frozen=True)
class Maira2Codec(BoxCodec):
    """MAIRA-2 ``<box><x..><y..><x..><y..></box>`` bins on the centre-cropped square."""

    name = "maira2"
    description = "MAIRA-2 <obj>phrase<box><xNN><yNN><xNN><yNN></box></obj>, 100 bins, centre crop"
    no_box_answer = "Not present."
    side: int = 518

    def __post_init__(self) -> None:
        if isinstance(self.side, bool) or not isinstance(self.side, int) or self.side <= 0:
            raise ValueError(f"maira2 codec: side must be a positive integer, got {self.side!r}")

    @property
    def format_hint(self) -> str:
        return (
            "Answer with <obj>phrase<box><xA><yB><xC><yD></box></obj>, one <box> per box, "
            "where A, B, C, D are bins 0-99 of the image width and height; answer "
            f"'{self.no_box_answer}' if absent."
        )

    def image_transform(self, size: tuple[int, int]) -> SquareTransform:
        return center_crop(size[0], size[1], self.side)

    def format(self, boxes: Sequence[Box], *, image_size: tuple[int, int], phrase: str = "") -> str:
        bins = self._encoded(boxes, image_size)
        if not bins:
            return self.no_box_answer
        body = "".join(f"<box><x{x0}><y{y0}><x{x1}><y{y1}></box>" for x0, y0, x1, y1 in bins)
        return f"<obj>{phrase}{body}</obj>"

    def _encode(self, box: Box, size: tuple[int, int]) -> tuple[int, int, int, int]:
        return bin_box(box.to_list(), BINS)

    def _decode(self, values: tuple[float, ...], size: tuple[int, int]) -> tuple[float, ...]:
        return tuple((b + 0.5) / BINS for b in values)

    def _extract(self, text: str) -> Extracted:
        found = Extracted()
        for content, closed in tag_contents(text, _OPEN, _CLOSE):
            if not closed:  # truncated: keep the box only if its four tokens are complete
                m = _TOKENS_PREFIX.match(content)
                content = m.group(0) if m else ""
            tokens = _TOKEN.findall(content)
            if not closed and len(tokens) < 4:
                found.truncated = True
            elif "".join(a.lower() for a, _ in tokens) == "xyxy":
                found.groups.append(tuple(float(v) for _, v in tokens))
            else:
                found.groups.append(())  # not <x><y><x><y>: an unusable box
        return found
