"""Qwen2.5-VL grounding syntax.

JSON ``[{"bbox_2d": [x1, y1, x2, y2], "label": "phrase"}, ...]`` in ABSOLUTE pixels of the
image after the processor's resize (``smart_resize``: both sides multiples of ``factor``,
area within ``[min_pixels, max_pixels]``, aspect kept). The resize neither pads nor crops, so
no transform is applied by the prompt builder; the frame is the resized image of THIS image:
an exemplar's boxes are written in its own resized frame, computed from its own size.
No box: ``[]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ricl.boxes.codecs._parse import Extracted, extract_json
from ricl.boxes.codecs.base import BoxCodec, check_size
from ricl.boxes.codecs.qwen3vl import BBOX_KEYS, bbox_2d_json
from ricl.types import Box

__all__ = ["Qwen25VLCodec"]


@dataclass(frozen=True)
class Qwen25VLCodec(BoxCodec):
    """Qwen2.5-VL JSON ``bbox_2d`` boxes in absolute pixels of the smart-resized image."""

    name = "qwen25vl"
    description = 'Qwen2.5-VL JSON [{"bbox_2d": [...], "label": ...}], pixels of the resized image'
    no_box_answer = "[]"
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280
    factor: int = 28

    def __post_init__(self) -> None:
        for field in ("min_pixels", "max_pixels", "factor"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"qwen25vl codec: {field} must be a positive integer, got {v!r}")
        if self.min_pixels > self.max_pixels:
            raise ValueError(
                f"qwen25vl codec: min_pixels={self.min_pixels} > max_pixels={self.max_pixels}"
            )

    @property
    def format_hint(self) -> str:
        return (
            'Answer in JSON as [{"bbox_2d": [x1, y1, x2, y2], "label": "<phrase>"}, ...] with '
            "integer pixel coordinates of the image as you see it; answer [] if absent."
        )

    def resized_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """``(width, height)`` the processor resizes this original image to.

        Uses transformers' own ``smart_resize`` (imported here, lazily). Raises ValueError
        for an aspect ratio above 200 (as transformers does).
        """
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        w, h = check_size(image_size)
        h_bar, w_bar = smart_resize(
            h, w, factor=self.factor, min_pixels=self.min_pixels, max_pixels=self.max_pixels
        )
        return int(w_bar), int(h_bar)

    def format(self, boxes: Sequence[Box], *, image_size: tuple[int, int], phrase: str = "") -> str:
        return bbox_2d_json(self._encoded(boxes, image_size), phrase)

    def _scale(self, size: tuple[int, int]) -> tuple[int, int]:
        return self.resized_size(size)

    def _extract(self, text: str) -> Extracted:
        return extract_json(text, BBOX_KEYS)
