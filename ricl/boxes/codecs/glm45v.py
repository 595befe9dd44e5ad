"""GLM-4.5V / GLM-4.1V grounding syntax.

``<|begin_of_box|>[x1, y1, x2, y2]<|end_of_box|>`` (several boxes: ``[[...], [...]]`` inside
one pair): integers 0..1000 relative to the image. Source: the GLM-V README,
https://github.com/zai-org/GLM-V ("Grounding": each value "normalized by the image width
(for x) or height (for y) and scaled by 1000"; "the special tokens ``<|begin_of_box|>`` and
``<|end_of_box|>`` are used to mark the image bounding box in the answer. The bracket style
may vary ([], [[]], (), <>, etc.)"). The processor resizes without padding or cropping
(``smart_resize`` in transformers' ``models/glm4v/image_processing_glm4v.py``), so relative
equals the original's normalized (no transform).

Read back: only the text after the last ``</think>`` (the thinking models reason first);
``(...)`` and ``<...>`` inside the box tags are read like ``[...]``; with the special tokens
removed by ``skip_special_tokens``, bare ``[x1, y1, x2, y2]`` lists are read instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ricl.boxes.codecs._parse import Extracted, extract_json, tagged_lists
from ricl.boxes.codecs.base import BoxCodec
from ricl.types import Box

__all__ = ["GLM45VCodec"]

_OPEN = re.compile(r"<\|\s*begin_of_box\s*\|>")
_CLOSE = re.compile(r"<\|\s*end_of_box\s*\|>")
_OPEN_MARK = re.compile("\x00")
_CLOSE_MARK = re.compile("\x01")
_BRACKETS = str.maketrans("()<>", "[][]")


@dataclass(frozen=True)
class GLM45VCodec(BoxCodec):
    """GLM-V ``<|begin_of_box|>[...]<|end_of_box|>`` boxes, 0..1000 relative to the image."""

    name = "glm45v"
    description = "GLM-4.5V <|begin_of_box|>[x1, y1, x2, y2]<|end_of_box|>, integers 0-1000"
    no_box_answer = "Not present."

    @property
    def format_hint(self) -> str:
        return (
            "Answer with <|begin_of_box|>[x1, y1, x2, y2]<|end_of_box|> (several boxes: "
            "[[x1, y1, x2, y2], ...] inside one pair), integers 0-1000 relative to the image; "
            f"answer '{self.no_box_answer}' if absent."
        )

    def format(self, boxes: Sequence[Box], *, image_size: tuple[int, int], phrase: str = "") -> str:
        ints = [list(b) for b in self._encoded(boxes, image_size)]
        if not ints:
            return self.no_box_answer
        return f"<|begin_of_box|>{ints[0] if len(ints) == 1 else ints}<|end_of_box|>"

    def _extract(self, text: str) -> Extracted:
        answer = text.rsplit("</think>", 1)[-1]
        if _OPEN.search(answer) is None:  # tags removed by skip_special_tokens
            return extract_json(answer)
        marked = _CLOSE.sub("\x01", _OPEN.sub("\x00", answer)).translate(_BRACKETS)
        return tagged_lists(marked, _OPEN_MARK, _CLOSE_MARK)
