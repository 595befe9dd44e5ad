"""MiniCPM-V grounding syntax.

``<ref>phrase</ref><box>x1 y1 x2 y2</box>``: space-separated integers 0..1000 relative to the
original image (no transform); several boxes: one ``<box>`` per box after the ``<ref>``.
Source: OpenBMB maintainers on https://github.com/OpenBMB/MiniCPM-V -- issue #772 (the
schema is ``<ref>text</ref><box>x1 y1 x2 y2</box>``, "normalized to 0-1000 integers"),
issue #982 (MiniCPM-V 4.5 answers ``<box>x1 y1 x2 y2</box>``, normalized to 1000) -- and
OpenSQZ/MiniCPM-V-CookBook issue #39 (multiply by the original image's width and height
after inference). The repository's docs themselves do not state the frame; the MiniCPM-V
2.x / 4.x models share this schema per those answers (not checked per release).

Whether ``<ref>``/``<box>`` are special tokens (removed by ``skip_special_tokens``) is not
verified; if they are, the answer is ``phrase100 200 500 600``, so text without any
``<box>`` tag is read for runs of exactly four whitespace-separated integers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ricl.boxes.codecs._parse import Extracted, tagged_lists
from ricl.boxes.codecs.base import BoxCodec
from ricl.types import Box

__all__ = ["MiniCPMVCodec"]

_OPEN = re.compile(r"<\s*box\s*>", re.IGNORECASE)
_CLOSE = re.compile(r"<\s*/\s*box\s*>", re.IGNORECASE)
_BARE = re.compile(r"(?<![\d.])(\d+)\s+(\d+)\s+(\d+)\s+(\d+)(?![\d.])")


@dataclass(frozen=True)
class MiniCPMVCodec(BoxCodec):
    """MiniCPM-V ``<box>x1 y1 x2 y2</box>`` boxes, 0..1000 relative to the original image."""

    name = "minicpmv"
    description = "MiniCPM-V <ref>phrase</ref><box>x1 y1 x2 y2</box>, integers 0-1000"
    no_box_answer = "Not present."

    @property
    def format_hint(self) -> str:
        return (
            "Answer with <ref>phrase</ref> followed by one <box>x1 y1 x2 y2</box> per box, "
            "space-separated integers 0-1000 relative to the image; answer "
            f"'{self.no_box_answer}' if absent."
        )

    def format(self, boxes: Sequence[Box], *, image_size: tuple[int, int], phrase: str = "") -> str:
        ints = self._encoded(boxes, image_size)
        if not ints:
            return self.no_box_answer
        ref = f"<ref>{phrase}</ref>" if phrase else ""
        return ref + "".join(f"<box>{x0} {y0} {x1} {y1}</box>" for x0, y0, x1, y1 in ints)

    def _extract(self, text: str) -> Extracted:
        if _OPEN.search(text) is None:  # tags removed by skip_special_tokens?
            return Extracted([tuple(float(v) for v in m.groups()) for m in _BARE.finditer(text)])
        return tagged_lists(text, _OPEN, _CLOSE)
