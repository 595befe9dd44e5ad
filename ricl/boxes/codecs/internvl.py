"""InternVL grounding syntax.

``<ref>phrase</ref><box>[[x1, y1, x2, y2], ...]</box>``: integers 0..1000 relative to the
original image (no transform); several boxes share one ``<box>`` list.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ricl.boxes.codecs._parse import Extracted, tagged_lists
from ricl.boxes.codecs.base import BoxCodec
from ricl.types import Box

__all__ = ["InternVLCodec"]

_OPEN = re.compile(r"<\s*box\s*>", re.IGNORECASE)
_CLOSE = re.compile(r"<\s*/\s*box\s*>", re.IGNORECASE)


@dataclass(frozen=True)
class InternVLCodec(BoxCodec):
    """InternVL ``<box>[[...]]</box>`` boxes, 0..1000 relative to the original image."""

    name = "internvl"
    description = "InternVL <ref>phrase</ref><box>[[x1, y1, x2, y2]]</box>, integers 0-1000"
    no_box_answer = "Not present."

    @property
    def format_hint(self) -> str:
        return (
            "Answer with <ref>phrase</ref><box>[[x1, y1, x2, y2], ...]</box>, integers 0-1000 "
            f"relative to the image; answer '{self.no_box_answer}' if absent."
        )

    def format(self, boxes: Sequence[Box], *, image_size: tuple[int, int], phrase: str = "") -> str:
        ints = self._encoded(boxes, image_size)
        if not ints:
            return self.no_box_answer
        ref = f"<ref>{phrase}</ref>" if phrase else ""
        return f"{ref}<box>{[list(b) for b in ints]}</box>"

    def _extract(self, text: str) -> Extracted:
        return tagged_lists(text, _OPEN, _CLOSE)
