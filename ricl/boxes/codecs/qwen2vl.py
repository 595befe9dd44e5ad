"""Qwen2-VL grounding syntax.

``<|object_ref_start|>phrase<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>``:
integers 0..1000 relative to the model's input image. Qwen2-VL resizes without padding or
cropping, so relative coordinates equal the original image's normalized ones (no transform).
Several boxes: one object_ref, then one ``<|box_start|>...<|box_end|>`` per box.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ricl.boxes.codecs._parse import NUMBER, Extracted, numbers, tag_contents
from ricl.boxes.codecs.base import BoxCodec
from ricl.types import Box

__all__ = ["Qwen2VLCodec", "pair_box_groups"]

_OPEN = re.compile(r"<\|box_start\|>")
_CLOSE = re.compile(r"<\|box_end\|>")
_PAIRS = re.compile(
    rf"\s*\(\s*({NUMBER})\s*,\s*({NUMBER})\s*\)\s*,?\s*\(\s*({NUMBER})\s*,\s*({NUMBER})\s*\)"
)


def pair_box_groups(text: str, open_re: re.Pattern[str], close_re: re.Pattern[str]) -> Extracted:
    """Boxes written ``(x1,y1),(x2,y2)`` between ``open_re`` and ``close_re`` tags.

    A closed tag gives all its numbers (missing parentheses tolerated; not 4 numbers is a
    dropped box). An unclosed tag gives a box only when its two pairs are complete.
    Text with no opening tag at all is read for bare ``(x1,y1),(x2,y2)`` pairs: servers
    decode with ``skip_special_tokens`` by default, which removes the box tags of models
    whose tags are special tokens (Qwen2-VL), leaving ``phrase(x1,y1),(x2,y2)``.
    """
    found = Extracted()
    if open_re.search(text) is None:
        for m in _PAIRS.finditer(text):
            found.groups.append(tuple(float(v) for v in m.groups()))
        return found
    for content, closed in tag_contents(text, open_re, close_re):
        if closed:
            found.groups.append(numbers(content))
        elif m := _PAIRS.match(content):
            found.groups.append(tuple(float(v) for v in m.groups()))
        else:
            found.truncated = True
    return found


@dataclass(frozen=True)
class Qwen2VLCodec(BoxCodec):
    """Qwen2-VL special-token boxes, 0..1000 relative to the original image."""

    name = "qwen2vl"
    description = "Qwen2-VL <|box_start|>(x1,y1),(x2,y2)<|box_end|>, integers 0-1000 relative"
    no_box_answer = "Not present."

    @property
    def format_hint(self) -> str:
        return (
            "Answer with <|object_ref_start|>phrase<|object_ref_end|> followed by one "
            "<|box_start|>(x1,y1),(x2,y2)<|box_end|> per box, integers 0-1000 relative to "
            f"the image; answer '{self.no_box_answer}' if absent."
        )

    def format(self, boxes: Sequence[Box], *, image_size: tuple[int, int], phrase: str = "") -> str:
        ints = self._encoded(boxes, image_size)
        if not ints:
            return self.no_box_answer
        ref = f"<|object_ref_start|>{phrase}<|object_ref_end|>" if phrase else ""
        return ref + "".join(
            f"<|box_start|>({x0},{y0}),({x1},{y1})<|box_end|>" for x0, y0, x1, y1 in ints
        )

    def _extract(self, text: str) -> Extracted:
        return pair_box_groups(text, _OPEN, _CLOSE)
