"""Florence-2 grounding syntax.

``phrase<loc_X0><loc_Y0><loc_X1><loc_Y1>``: 1000 bins per axis relative to the image: the
post-processor maps bins to pixels with the ORIGINAL ``(width, height)`` it is given
(``post_process_generation(..., image_size=(image.width, image.height))``), so no
transform. Several boxes of one phrase follow it back to back, ``phrase<loc_..>x4<loc_..>x4``
(the ``<CAPTION_TO_PHRASE_GROUNDING>`` output format).

Bins are Florence-2's own rule, ``Florence2PostProcessor`` in transformers
(``src/transformers/models/florence2/processing_florence2.py``): ``quantize`` takes
``floor(v * 1000)`` clamped to ``0..999`` and ``dequantize`` reads a bin ``b`` as its centre
``(b + 0.5) / 1000`` (there scaled to pixels). Corners sharing a bin are widened to the
next bin (:func:`~ricl.boxes.codecs.base.bin_box`).

The ``<loc_N>`` tokens are additional SPECIAL tokens of Florence-2's tokenizer, so a server
decoding with ``skip_special_tokens`` removes the coordinates themselves: such answers carry
no box and read as prose (decode with ``skip_special_tokens=False``, as the model card does).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ricl.boxes.codecs._parse import Extracted, token_runs
from ricl.boxes.codecs.base import BoxCodec, bin_box
from ricl.types import Box

__all__ = ["Florence2Codec"]

BINS = 1000
_LOC = re.compile(r"<loc_(\d+)>")


@dataclass(frozen=True)
class Florence2Codec(BoxCodec):
    """Florence-2 ``phrase<loc_X0><loc_Y0><loc_X1><loc_Y1>`` boxes, 1000 bins (centres)."""

    name = "florence2"
    description = "Florence-2 phrase<loc_X0><loc_Y0><loc_X1><loc_Y1>, 1000 bins relative"
    no_box_answer = "Not present."

    @property
    def format_hint(self) -> str:
        return (
            "Answer with the phrase followed by <loc_X0><loc_Y0><loc_X1><loc_Y1> for each box, "
            "bins 0-999 of the image width and height; answer "
            f"'{self.no_box_answer}' if absent."
        )

    def format(self, boxes: Sequence[Box], *, image_size: tuple[int, int], phrase: str = "") -> str:
        bins = self._encoded(boxes, image_size)
        if not bins:
            return self.no_box_answer
        return phrase + "".join(
            f"<loc_{x0}><loc_{y0}><loc_{x1}><loc_{y1}>" for x0, y0, x1, y1 in bins
        )

    def _encode(self, box: Box, size: tuple[int, int]) -> tuple[int, int, int, int]:
        return bin_box(box.to_list(), BINS)

    def _decode(self, values: tuple[float, ...], size: tuple[int, int]) -> tuple[float, ...]:
        return tuple((b + 0.5) / BINS for b in values)

    def _extract(self, text: str) -> Extracted:
        return token_runs(text, _LOC)
