"""How many tokens an answer may need: ``max_tokens`` derived from the codec and the box count.

Answers cut at ``max_tokens`` lose their last boxes (a fine-tuned model writing one box per
lesion needs far more than a zero-shot one). :func:`answer_token_budget` bounds the tokens
of the codec's own answer for ``n_boxes`` boxes from above: a byte-level BPE token covers
at least one byte, so the answer's length in bytes (ASCII: characters) bounds its tokens,
and special tokens such as ``<|box_start|>`` (one token, 13 characters) only widen the
margin. ``slack`` covers the prose models add around their boxes.

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
_SIZE = (4096, 4096)  # the largest frames: pixel codecs write 4-digit coordinates


def worst_case_boxes(n: int) -> list[Box]:
    """``n`` distinct boxes whose coordinates need the most digits (none at 0 or 1)."""
    return [Box(0.1 + 0.8 * i / (2 * n + 1), 0.123, 0.9 - 0.8 * i / (2 * n + 1), 0.987)
            for i in range(n)]  # fmt: skip


def answer_token_budget(
    codec: BoxCodec,
    n_boxes: int,
    *,
    phrase: str = "",
    image_size: tuple[int, int] = _SIZE,
    slack: int = 48,
    multiple: int = 16,
) -> int:
    """An upper bound on the tokens ``codec`` needs to answer ``n_boxes`` boxes for
    ``phrase`` (plus ``slack`` tokens of prose), rounded up to a ``multiple``.

    Raises ValueError for a negative ``n_boxes``.
    """
    if n_boxes < 0:
        raise ValueError(f"n_boxes must be >= 0, got {n_boxes}")
    text = codec.format(worst_case_boxes(n_boxes), image_size=image_size, phrase=phrase)
    needed = len(text.encode("utf-8")) + slack
    return int(math.ceil(needed / multiple) * multiple)


def dataset_token_budget(codec: BoxCodec, instances: Sequence[object]) -> int:
    """:func:`answer_token_budget` for the instance with the most gold boxes and the longest
    phrase of ``instances`` (objects with ``boxes`` and ``phrase``)."""
    n = max((len(getattr(i, "boxes", ())) for i in instances), default=1)
    phrase = max((getattr(i, "phrase", "") for i in instances), key=len, default="")
    return answer_token_budget(codec, max(n, 1), phrase=phrase)
