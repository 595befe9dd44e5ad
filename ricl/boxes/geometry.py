"""Exact box geometry: union area, IoU of boxes and of box sets, greedy matching.

Everything here is exact geometry on axis-aligned rectangles (no rasterization),
so metrics do not depend on a grid resolution. Inputs are :class:`ricl.types.Box`
or anything with ``x_min, y_min, x_max, y_max`` attributes; all in one frame.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from ricl.types import Box

__all__ = [
    "Match",
    "box_iou",
    "greedy_match",
    "hull",
    "intersection_area",
    "iou_matrix",
    "union_area",
    "union_iou",
]


def hull(boxes: Sequence[Box]) -> Box | None:
    """The smallest box holding every box in ``boxes``, or None when there are none."""
    if not boxes:
        return None
    return Box(
        min(b.x_min for b in boxes),
        min(b.y_min for b in boxes),
        max(b.x_max for b in boxes),
        max(b.y_max for b in boxes),
    )


def intersection_area(a: Box, b: Box) -> float:
    """Area of ``a ∩ b`` (0.0 when they do not overlap)."""
    w = min(a.x_max, b.x_max) - max(a.x_min, b.x_min)
    h = min(a.y_max, b.y_max) - max(a.y_min, b.y_min)
    return w * h if w > 0 and h > 0 else 0.0


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes, in [0, 1]."""
    inter = intersection_area(a, b)
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def union_area(boxes: Sequence[Box]) -> float:
    """Exact area of the union of rectangles (overlaps counted once).

    Sweep over the distinct x coordinates; within each vertical slab the covered
    length is the union of the y-intervals of the boxes spanning the slab.
    O(n² log n) for n boxes, which is plenty for grounding (n rarely exceeds 20).
    """
    if not boxes:
        return 0.0
    if len(boxes) == 1:
        return boxes[0].area
    xs = sorted({b.x_min for b in boxes} | {b.x_max for b in boxes})
    total = 0.0
    for x0, x1 in itertools.pairwise(xs):
        intervals = sorted((b.y_min, b.y_max) for b in boxes if b.x_min <= x0 and b.x_max >= x1)
        covered = 0.0
        cur_lo = cur_hi = None
        for lo, hi in intervals:
            if cur_hi is None or lo > cur_hi:
                if cur_hi is not None:
                    covered += cur_hi - cur_lo
                cur_lo, cur_hi = lo, hi
            else:
                cur_hi = max(cur_hi, hi)
        if cur_hi is not None:
            covered += cur_hi - cur_lo
        total += covered * (x1 - x0)
    return total


def union_iou(pred: Sequence[Box], gold: Sequence[Box]) -> float:
    """IoU between the union of ``pred`` and the union of ``gold``.

    Both empty -> 1.0 (the model correctly found nothing); exactly one empty -> 0.0.
    Uses |A ∩ B| = |A| + |B| - |A ∪ B| with exact union areas.
    """
    if not pred and not gold:
        return 1.0
    if not pred or not gold:
        return 0.0
    a = union_area(pred)
    b = union_area(gold)
    u = union_area([*pred, *gold])
    if u <= 0:
        return 0.0
    inter = max(0.0, a + b - u)
    return min(1.0, inter / u)


def iou_matrix(pred: Sequence[Box], gold: Sequence[Box]) -> list[list[float]]:
    """``len(pred) x len(gold)`` matrix of pairwise IoU (plain lists; no numpy needed)."""
    return [[box_iou(p, g) for g in gold] for p in pred]


@dataclass(frozen=True, slots=True)
class Match:
    """One matched pair: indices into the predicted and gold sequences, and their IoU."""

    pred_index: int
    gold_index: int
    iou: float


def greedy_match(pred: Sequence[Box], gold: Sequence[Box], threshold: float = 0.5) -> list[Match]:
    """One-to-one greedy matching by descending IoU.

    Repeatedly takes the highest-IoU pair whose two boxes are both unmatched, as long
    as its IoU is >= ``threshold``. Ties break by (pred index, gold index), so the
    result is deterministic. Returns the matches sorted by descending IoU.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    pairs = [
        (iou, i, j)
        for i, row in enumerate(iou_matrix(pred, gold))
        for j, iou in enumerate(row)
        if iou >= threshold and iou > 0.0
    ]
    pairs.sort(key=lambda t: (-t[0], t[1], t[2]))
    used_p: set[int] = set()
    used_g: set[int] = set()
    out: list[Match] = []
    for iou, i, j in pairs:
        if i in used_p or j in used_g:
            continue
        used_p.add(i)
        used_g.add(j)
        out.append(Match(i, j, iou))
    return out
