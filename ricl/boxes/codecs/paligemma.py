"""PaliGemma / PaliGemma 2 detection syntax.

``<locY0><locX0><locY1><locX1> phrase`` per box -- note the Y-FIRST order -- four 4-digit
tokens ``<loc0000>``..``<loc1023>``; several boxes are joined by `` ; `` (the ``detect``
task's own separator). The values are relative to the model's input, a plain resize of the
original (no pad, no crop), so relative equals the original image's normalized (no
transform).

Bins follow big_vision, the PaliGemma training code: a coordinate ``v`` is written as
``clip(round(v * 1023), 0, 1023)`` (``big_vision/pp/proj/paligemma/segmentation.py``,
``refcoco_mask2str``: ``tf.round(bbox * 1023)``; ``tf.round`` rounds half to even, as
:func:`~ricl.boxes.codecs.base.quantize` does) and a token ``b`` is read back as
``b / 1023`` (``big_vision/evaluators/proj/paligemma/transfers/segmentation.py``: "tokens
/ 1023  # Back to [0.0 ... 1.0]"), https://github.com/google-research/big_vision. Some demo
parsers (e.g. those derived from the Gemma docs' PaliGemma inference notebook) divide by
1024 instead: the two readings differ by under one bin.

The ``<locNNNN>`` strings are ordinary entries of PaliGemma's vocabulary, not special
tokens: they survive ``skip_special_tokens`` (transformers demos decode with it and then
read the tokens), so there is no stripped variant to read. What PaliGemma emits when there
is nothing to detect is not documented; this codec writes ``"Not present."`` (read back as
empty, like any "no finding" prose).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ricl.boxes.codecs._parse import Extracted, token_runs
from ricl.boxes.codecs.base import BoxCodec
from ricl.types import Box

__all__ = ["PaliGemmaCodec"]

SCALE = 1023
_LOC = re.compile(r"<loc(\d{4})>")


@dataclass(frozen=True)
class PaliGemmaCodec(BoxCodec):
    """PaliGemma ``<locY0><locX0><locY1><locX1> phrase`` boxes, bins 0..1023, y first."""

    name = "paligemma"
    description = "PaliGemma <locY0><locX0><locY1><locX1> phrase ; ..., bins 0-1023, y first"
    no_box_answer = "Not present."

    @property
    def format_hint(self) -> str:
        return (
            "Answer with <locY0><locX0><locY1><locX1> phrase for each box, joined by ' ; ', "
            "where each <locNNNN> is a 4-digit bin 0-1023 of the image height or width "
            f"(y first); answer '{self.no_box_answer}' if absent."
        )

    def format(self, boxes: Sequence[Box], *, image_size: tuple[int, int], phrase: str = "") -> str:
        ints = self._encoded(boxes, image_size)
        if not ints:
            return self.no_box_answer
        label = f" {phrase}" if phrase else ""
        return " ; ".join(
            f"<loc{y0:04d}><loc{x0:04d}><loc{y1:04d}><loc{x1:04d}>{label}"
            for x0, y0, x1, y1 in ints
        )

    def _scale(self, size: tuple[int, int]) -> tuple[int, int]:
        return SCALE, SCALE

    def _decode(self, values: tuple[float, ...], size: tuple[int, int]) -> tuple[float, ...]:
        y0, x0, y1, x1 = values
        return x0 / SCALE, y0 / SCALE, x1 / SCALE, y1 / SCALE

    def _extract(self, text: str) -> Extracted:
        return token_runs(text, _LOC)
