"""How many tokens an answer may need: ``max_tokens`` derived from the codec and the box count.

Answers cut at ``max_tokens`` lose their last boxes (a fine-tuned model writing one box per
lesion needs far more than a zero-shot one). :func:`answer_token_budget` bounds the tokens
of the codec's own answer for ``n_boxes`` boxes from above: a byte-level BPE token covers
at least one byte, so the answer's length in bytes (ASCII: characters) bounds its tokens,
and special tokens such as ``<|box_start|>`` (one token, 13 characters) only widen the
margin. ``slack`` covers the prose models add around their boxes.

The answer measured is the codec's for :func:`worst_case_boxes`, whose coordinates take
the most characters in every frame (4-digit pixels, ``1000`` on 0-1000 grids, four
significant decimals for normalized floats), on the largest square and off-square frames.

>>> from ricl.boxes.codecs import get_codec
>>> answer_token_budget(get_codec("qwen2vl"), 1, phrase="effusion")
144
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ricl.types import Box

if TYPE_CHECKING:
    from ricl.boxes.codecs import BoxCodec

__all__ = ["AUTO", "answer_token_budget", "dataset_token_budget", "worst_case_boxes"]

AUTO = "auto"  # the backend option value asking the eval runner to derive max_tokens
# the largest frames, square and off-square: a codec that resizes to a pixel budget
# (Qwen2.5-VL's max_pixels) writes 4-digit pixels on the long side of an off-square image
_SIZES = ((4096, 4096), (4096, 1024), (1024, 4096))
_LOW, _HIGH, _SPREAD = 0.2513, 0.99967, 0.3  # >= 1000/4096: 4 digits at 4096 px; 1000 on 0-1000


def _long_decimal(v: float) -> float:
    """``v`` at 4 decimals with a nonzero last one (``0.2513``, not ``0.25``)."""
    q = round(v * 10_000)
    return (q + 3 if q % 10 == 0 else q) / 10_000


def worst_case_boxes(n: int) -> list[Box]:
    """``n`` distinct boxes whose coordinates need the most characters in every frame:
    corners between 0.2513 and 0.99967 (4-digit pixels up to 4096 px, ``1000`` on a 0-1000
    grid, ``100`` on 0-100) with four nonzero-ended decimals (normalized floats)."""
    out = []
    for i in range(n):
        t = _SPREAD * i / n
        x0, x1 = _long_decimal(_LOW + t), _long_decimal(_HIGH - t) if i else _HIGH
        out.append(Box(x0, _LOW + 0.0024, x1, _HIGH))
    return out


def answer_token_budget(
    codec: BoxCodec,
    n_boxes: int,
    *,
    phrase: str = "",
    image_size: tuple[int, int] | None = None,
    slack: int = 48,
    multiple: int = 16,
) -> int:
    """An upper bound on the tokens ``codec`` needs to answer ``n_boxes`` boxes for
    ``phrase`` (plus ``slack`` tokens of prose), rounded up to a ``multiple``, on
    ``image_size`` (default: the largest of 4096 x 4096, 4096 x 1024 and 1024 x 4096).

    Raises ValueError for a negative ``n_boxes``.
    """
    if n_boxes < 0:
        raise ValueError(f"n_boxes must be >= 0, got {n_boxes}")
    boxes = worst_case_boxes(n_boxes)
    sizes = _SIZES if image_size is None else (image_size,)
    longest = max(len(codec.format(boxes, image_size=s, phrase=phrase).encode()) for s in sizes)
    needed = longest + slack
    return int(math.ceil(needed / multiple) * multiple)


def dataset_token_budget(codec: BoxCodec, instances: Sequence[object]) -> int:
    """:func:`answer_token_budget` for the instance with the most gold boxes and the longest
    phrase of ``instances`` (objects with ``boxes`` and ``phrase``)."""
    n = max((len(getattr(i, "boxes", ())) for i in instances), default=1)
    phrase = max((getattr(i, "phrase", "") for i in instances), key=len, default="")
    return answer_token_budget(codec, max(n, 1), phrase=phrase)
