"""Box-frame hypotheses: how the numbers of an answer may map onto the image.

Served models disagree on frames, and the commonest failure of a grounding evaluation is a
wrong one: Qwen2.5-VL answers in pixels of its resized input, Qwen2-VL / Qwen3-VL /
InternVL / GLM-4.5V in 0-1000 relative units, MedGemma y first, some fine-tunes in
normalized floats or in pixels of the image they were sent. Each hypothesis reads the
answer's number quadruples (syntax-agnostic) as boxes on the image AS SENT; the probe maps
them back through the prompt codec's square transform and scores them against the gold.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ricl.boxes.codecs.qwen25vl import Qwen25VLCodec
from ricl.errors import InvalidBoxError
from ricl.types import Box

__all__ = ["FRAMES", "frame_boxes", "number_quads"]

# a number not glued to a word (the "2" of "bbox_2d" is not one), except the numbers of
# location tokens: <locNNNN>, <loc_N>, <patch_index_NNNN>
_NUMBER = re.compile(r"(?:(?<=<loc)|(?<=<loc_)|(?<=patch_index_)|(?<![\w.]))-?\d+(?:\.\d+)?")
_Decode = Callable[[tuple[float, ...], tuple[int, int], tuple[int, int]], tuple[float, ...]]


def _rel(scale: float, y_first: bool = False) -> _Decode:
    def decode(q: tuple[float, ...], sent: tuple[int, int], resized: tuple[int, int]):
        a, b, c, d = (v / scale for v in q)
        return (b, a, d, c) if y_first else (a, b, c, d)

    return decode


def _pixels(which: str) -> _Decode:
    def decode(q: tuple[float, ...], sent: tuple[int, int], resized: tuple[int, int]):
        w, h = sent if which == "sent" else resized
        return q[0] / w, q[1] / h, q[2] / w, q[3] / h

    return decode


#: name -> (description, decoder of one quadruple to normalized x0, y0, x1, y1 on the sent image)
FRAMES: dict[str, tuple[str, _Decode]] = {
    "rel1000": ("x, y in 0-1000 of the image (Qwen2-VL, Qwen3-VL, InternVL, GLM-4.5V)", _rel(1000)),
    "rel1000_yx": ("y first, 0-1000 of the image (MedGemma box_2d)", _rel(1000, y_first=True)),
    "resized_px": ("pixels of the model's resized input (Qwen2.5-VL smart resize)", _pixels("resized")),
    "sent_px": ("pixels of the image as sent", _pixels("sent")),
    "normalized": ("floats 0-1 of the image", _rel(1.0)),
    "rel100": ("0-100 of the image (CheXagent)", _rel(100)),
}  # fmt: skip


def number_quads(text: str) -> list[tuple[float, ...]]:
    """The answer's numbers in groups of four, in written order (a trailing group of fewer
    than four is dropped: a box cut off by max_tokens)."""
    values = [float(m) for m in _NUMBER.findall(text)]
    return [tuple(values[i : i + 4]) for i in range(0, len(values) - 3, 4)]


def frame_boxes(
    frame: str,
    quads: list[tuple[float, ...]],
    sent_size: tuple[int, int],
    resize: Qwen25VLCodec | None = None,
) -> list[Box]:
    """``quads`` read in ``frame`` as boxes normalized on the sent image (clipped; boxes
    with no area left are dropped). ``resize`` gives the server's pixel limits for
    ``resized_px`` (default: Qwen2.5-VL's processor defaults). Raises KeyError for an
    unknown frame."""
    _, decode = FRAMES[frame]
    resized = (resize or Qwen25VLCodec()).resized_size(sent_size)
    out = []
    for q in quads:
        try:
            out.append(Box.clip(*decode(q, sent_size, resized))[0])
        except InvalidBoxError:
            continue
    return out
