"""Kosmos-2 grounding syntax.

``<phrase>phrase</phrase><object><patch_index_AAAA><patch_index_BBBB></object>`` on a 32 x 32
grid of the image: ``AAAA`` is the patch (``row * 32 + col``) holding the top-left corner,
``BBBB`` the one holding the bottom-right corner. Several boxes share one ``<object>``,
separated by ``</delimiter_of_multi_objects/>``. The grid covers the whole image: the image
processor resizes to 224 x 224 (its 224 centre crop then removes nothing; checked on
fine-tuned copies of the preprocessor config, not on Microsoft's own) and post-processing
returns boxes normalized to the image, so no transform.

The arithmetic is transformers' ``Kosmos2Processor`` helpers
(``src/transformers/models/kosmos2/processing_kosmos2.py``, themselves copied from
microsoft/unilm ``kosmos-2/demo/decode_string.py``): ``coordinate_to_patch_index`` writes
``floor(x1 * 32)`` / ``ceil(x2 * 32 - 1)`` (same for y), and ``patch_index_to_coordinate``
reads patch CENTRES, ``(col + 0.5) / 32``, except when both corners share a row or a column
(or a patch), where it reads patch EDGES, ``col / 32`` to ``(col + 1) / 32``. A round trip is
therefore accurate to one patch (1/32). Groups are handed on as ``(col0, row0, col1, row1)``.

The tags and patch tokens are added to the tokenizer as ordinary (non-special) tokens, so
``skip_special_tokens`` keeps them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ricl.boxes.codecs._parse import Extracted, tag_contents
from ricl.boxes.codecs.base import BoxCodec
from ricl.types import Box

__all__ = ["Kosmos2Codec"]

GRID = 32
_OPEN = re.compile(r"<object>")
_CLOSE = re.compile(r"</object>")
_DELIM = "</delimiter_of_multi_objects/>"
_INDEX = re.compile(r"<patch_index_(\d+)>")
_PAIR = re.compile(r"<patch_index_(\d+)>\s*<patch_index_(\d+)>")


def _cells(ul: int, lr: int) -> tuple[float, ...]:
    return float(ul % GRID), float(ul // GRID), float(lr % GRID), float(lr // GRID)


@dataclass(frozen=True)
class Kosmos2Codec(BoxCodec):
    """Kosmos-2 ``<object><patch_index_..><patch_index_..></object>`` boxes, 32 x 32 grid."""

    name = "kosmos2"
    description = "Kosmos-2 <phrase>..</phrase><object><patch_index_A><patch_index_B></object>"
    no_box_answer = "Not present."

    @property
    def format_hint(self) -> str:
        return (
            "Answer with <phrase>phrase</phrase><object><patch_index_AAAA><patch_index_BBBB>"
            "</object>, the 4-digit indices (row * 32 + column) of the 32 x 32 grid patches "
            "holding the top-left and bottom-right corners, several boxes separated by "
            f"</delimiter_of_multi_objects/>; answer '{self.no_box_answer}' if absent."
        )

    def format(self, boxes: Sequence[Box], *, image_size: tuple[int, int], phrase: str = "") -> str:
        cells = self._encoded(boxes, image_size)
        if not cells:
            return self.no_box_answer
        body = _DELIM.join(
            f"<patch_index_{r0 * GRID + c0:04d}><patch_index_{r1 * GRID + c1:04d}>"
            for c0, r0, c1, r1 in cells
        )
        ref = f"<phrase>{phrase}</phrase>" if phrase else ""
        return f"{ref}<object>{body}</object>"

    def _encode(self, box: Box, size: tuple[int, int]) -> tuple[int, int, int, int]:
        def lo(v: float) -> int:
            return min(GRID - 1, max(0, math.floor(v * GRID)))

        def hi(v: float) -> int:
            return min(GRID - 1, max(0, math.ceil(v * GRID - 1)))

        return lo(box.x_min), lo(box.y_min), hi(box.x_max), hi(box.y_max)

    def _decode(self, values: tuple[float, ...], size: tuple[int, int]) -> tuple[float, ...]:
        c0, r0, c1, r1 = values
        if c0 == c1 or r0 == r1:  # one row / column / patch: patch edges
            return c0 / GRID, r0 / GRID, (c1 + 1) / GRID, (r1 + 1) / GRID
        return tuple((v + 0.5) / GRID for v in values)

    def _extract(self, text: str) -> Extracted:
        if _OPEN.search(text) is None:
            return Extracted([_cells(int(a), int(b)) for a, b in _PAIR.findall(text)])
        found = Extracted()
        for content, closed in tag_contents(text, _OPEN, _CLOSE):
            parts = content.split(_DELIM)
            for i, part in enumerate(parts):
                index = [int(v) for v in _INDEX.findall(part)]
                if not closed and i == len(parts) - 1 and len(index) < 2:
                    found.truncated = True  # cut inside the last box
                elif len(index) == 2:
                    found.groups.append(_cells(*index))
                else:
                    found.groups.append(())  # not two patch indices: an unusable box
        return found
