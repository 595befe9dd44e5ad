"""DeepSeek-VL2 grounding syntax.

``<|ref|>phrase<|/ref|><|det|>[[x1, y1, x2, y2], ...]<|/det|>``: integers 0..999 relative to
the original image, several boxes in one ``<|det|>`` list. Source:
https://github.com/deepseek-ai/DeepSeek-VL2 -- the README's visual-grounding example answers
``<|ref|>The giraffe at the back.<|/ref|><|det|>[[580, 270, 999, 900]]<|/det|>``, and the
demo's reader (``deepseek_vl2/serve/app_modules/utils.py``, ``parse_ref_bbox``) draws
``box[0] / 999 * image_w`` etc. on the ORIGINAL image. The model's own processor pads its
views internally; the image is sent as is (no transform). A value ``v`` is written as
``round(v * 999)``.

``<|ref|>``, ``<|/ref|>``, ``<|det|>`` and ``<|/det|>`` are special tokens
(``processing_deepseek_vl_v2.py`` adds them as ``additional_special_tokens``): decoded with
``skip_special_tokens`` the answer is ``phrase[[x1, y1, x2, y2]]``, read here as bare lists.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ricl.boxes.codecs._parse import Extracted, extract_json, tagged_lists
from ricl.boxes.codecs.base import BoxCodec
from ricl.types import Box

__all__ = ["DeepSeekVL2Codec"]

SCALE = 999
_OPEN = re.compile(r"<\|\s*det\s*\|>")
_CLOSE = re.compile(r"<\|\s*/\s*det\s*\|>")


@dataclass(frozen=True)
class DeepSeekVL2Codec(BoxCodec):
    """DeepSeek-VL2 ``<|det|>[[...]]<|/det|>`` boxes, 0..999 relative to the original image."""

    name = "deepseekvl2"
    description = "DeepSeek-VL2 <|ref|>phrase<|/ref|><|det|>[[x1, y1, x2, y2]]<|/det|>, 0-999"
    no_box_answer = "Not present."

    @property
    def format_hint(self) -> str:
        return (
            "Answer with <|ref|>phrase<|/ref|><|det|>[[x1, y1, x2, y2], ...]<|/det|>, integers "
            f"0-999 relative to the image; answer '{self.no_box_answer}' if absent."
        )

    def format(self, boxes: Sequence[Box], *, image_size: tuple[int, int], phrase: str = "") -> str:
        ints = self._encoded(boxes, image_size)
        if not ints:
            return self.no_box_answer
        ref = f"<|ref|>{phrase}<|/ref|>" if phrase else ""
        return f"{ref}<|det|>{[list(b) for b in ints]}<|/det|>"

    def _scale(self, size: tuple[int, int]) -> tuple[int, int]:
        return SCALE, SCALE

    def _extract(self, text: str) -> Extracted:
        if _OPEN.search(text) is None:  # tags removed by skip_special_tokens
            return extract_json(text)
        return tagged_lists(text, _OPEN, _CLOSE)
