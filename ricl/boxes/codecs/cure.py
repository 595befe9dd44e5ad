"""CURE grounding syntax (the chest X-ray grounding model fine-tuned from MedGemma).

``phrase: [cx,cy,w,h] [cx,cy,w,h]``: centre, width and height normalized to the original
image, two decimals, one bracketed list per box separated by a space. Source:
https://github.com/PabloMessina/CURE (arXiv 2601.15408; weights pamessina/medgemma-4b-it-cure)
-- the README's phrase-grounding template ``{phrase}: [cx, cy, w, h]``, and the training
code, ``scripts/train_medgemma.py``: ``_format_bbox_string`` writes ``f"{coord:.2f}"``
joined by ``,`` and ``format_phrase_grounding`` joins several boxes with a space. Its test
transform is a plain resize (``vlm_research_kit/data/transforms_factory.py``) and its
datasets normalize boxes by the original width and height, so no transform. CURE has no
answer for an absent phrase (it is trained on positive phrases only); this codec writes
``"Not present."``. A list of lists ``[[...], [...]]`` is read as well.

Writing: each axis's centre and size are rounded to hundredths so that the box's corners,
``c -/+ s/2``, stay on the image and are as close as possible to the true ones (within one
hundredth); reading a box back and writing it again gives the same text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ricl.boxes.codecs._parse import Extracted, extract_json
from ricl.boxes.codecs.base import BoxCodec
from ricl.types import Box

__all__ = ["CureCodec"]

UNITS = 100  # two decimals


def _axis(lo: float, hi: float) -> tuple[int, int]:
    """``(centre, size)`` in hundredths for the span ``lo..hi`` of [0, 1]: the pair whose
    corners lie on the image and deviate least from ``lo`` and ``hi``."""
    c, s, a, b = (lo + hi) * UNITS / 2, (hi - lo) * UNITS, lo * UNITS, hi * UNITS
    candidates = (
        (max(abs(ci - si / 2 - a), abs(ci + si / 2 - b)), ci, si)
        for ci in range(math.floor(c) - 1, math.ceil(c) + 2)
        for si in range(max(1, math.floor(s) - 1), math.ceil(s) + 2)
        if 2 * ci - si >= 0 and 2 * ci + si <= 2 * UNITS
    )
    _, ci, si = min(candidates)
    return ci, si


@dataclass(frozen=True)
class CureCodec(BoxCodec):
    """CURE ``phrase: [cx,cy,w,h]`` boxes, normalized centre/size with two decimals."""

    name = "cure"
    description = "CURE phrase: [cx,cy,w,h] [cx,cy,w,h], normalized centre and size, 2 decimals"
    no_box_answer = "Not present."

    @property
    def format_hint(self) -> str:
        return (
            "Answer with the phrase, a colon and one [cx,cy,w,h] per box (centre x, centre y, "
            "width, height as fractions of the image, two decimals), separated by spaces; "
            f"answer '{self.no_box_answer}' if absent."
        )

    def format(self, boxes: Sequence[Box], *, image_size: tuple[int, int], phrase: str = "") -> str:
        encoded = self._encoded(boxes, image_size)
        if not encoded:
            return self.no_box_answer
        text = " ".join("[" + ",".join(f"{v / UNITS:.2f}" for v in b) + "]" for b in encoded)
        return f"{phrase}: {text}" if phrase else text

    def _encode(self, box: Box, size: tuple[int, int]) -> tuple[int, int, int, int]:
        cx, w = _axis(box.x_min, box.x_max)
        cy, h = _axis(box.y_min, box.y_max)
        return cx, cy, w, h

    def _decode(self, values: tuple[float, ...], size: tuple[int, int]) -> tuple[float, ...]:
        cx, cy, w, h = values
        return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2

    def _extract(self, text: str) -> Extracted:
        return extract_json(text)
