"""CheXagent grounding syntax.

``<|ref|>phrase<|/ref|><|box|>(x1,y1),(x2,y2)<|/box|>``: integers 0..100 relative to the
original image (no transform). Several boxes: one ``<|box|>...<|/box|>`` per box.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ricl.boxes.codecs._parse import Extracted
from ricl.boxes.codecs.base import BoxCodec
from ricl.boxes.codecs.qwen2vl import pair_box_groups
from ricl.types import Box

__all__ = ["CheXagentCodec"]

_OPEN = re.compile(r"<\|\s*box\s*\|>")
_CLOSE = re.compile(r"<\|\s*/\s*box\s*\|>")


@dataclass(frozen=True)
class CheXagentCodec(BoxCodec):
    """CheXagent ``<|box|>`` boxes, 0..100 relative to the original image."""

    name = "chexagent"
    description = "CheXagent <|box|>(x1,y1),(x2,y2)<|/box|>, integers 0-100 relative"
    no_box_answer = "Not present."

    @property
    def format_hint(self) -> str:
        return (
            "Answer with <|ref|>phrase<|/ref|> followed by one <|box|>(x1,y1),(x2,y2)<|/box|> "
            "per box, integers 0-100 relative to the image; answer "
            f"'{self.no_box_answer}' if absent."
        )

    def format(self, boxes: Sequence[Box], *, image_size: tuple[int, int], phrase: str = "") -> str:
        ints = self._encoded(boxes, image_size)
        if not ints:
            return self.no_box_answer
        ref = f"<|ref|>{phrase}<|/ref|>" if phrase else ""
        return ref + "".join(f"<|box|>({x0},{y0}),({x1},{y1})<|/box|>" for x0, y0, x1, y1 in ints)

    def _scale(self, size: tuple[int, int]) -> tuple[int, int]:
        return 100, 100

    def _extract(self, text: str) -> Extracted:
        return pair_box_groups(text, _OPEN, _CLOSE)
