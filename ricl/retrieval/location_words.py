"""Anatomical location words of a phrase, and how well a finding's boxes agree with them.

Chest radiographs are read in the radiological convention: the patient's RIGHT is on the
image's LEFT (small x in the canonical frame), the apices at the top (small y). A phrase
such as "small nodule in the right upper lobe" constrains where its boxes can be:
``side = right`` (box centre x < 0.5) and ``level = upper`` (centre y in the upper
third of the lungs). :func:`location_terms` reads those constraints from a phrase;
:func:`location_agreement` scores a finding's boxes against them, in [0, 1].

The vocabulary covers PadChest-GR's English sentences (lobes, zones, fields, bases,
apices, hila, costophrenic angles, bilateral) and the phantom releases' wording. Words
not listed constrain nothing, so a phrase without location words agrees with every box
(score 1.0) and the fusion that uses this score leaves its ranking to the other terms.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ricl.types import Box

__all__ = ["LocationTerms", "location_agreement", "location_terms"]

_WORD = re.compile(r"[a-z]+")

# level words -> the (y_min, y_max) band of the box centre, canonical frame
_LEVELS: dict[str, tuple[float, float]] = {
    "upper": (0.0, 0.45),
    "apical": (0.0, 0.35),
    "apex": (0.0, 0.35),
    "apices": (0.0, 0.35),
    "superior": (0.0, 0.45),
    "middle": (0.3, 0.65),
    "mid": (0.3, 0.65),
    "lingula": (0.35, 0.7),
    "lingular": (0.35, 0.7),
    "hilar": (0.25, 0.6),
    "hilum": (0.25, 0.6),
    "hila": (0.25, 0.6),
    "perihilar": (0.25, 0.65),
    "lower": (0.5, 1.0),
    "basal": (0.55, 1.0),
    "base": (0.55, 1.0),
    "bases": (0.55, 1.0),
    "inferior": (0.5, 1.0),
    "costophrenic": (0.6, 1.0),
    "retrocardiac": (0.5, 1.0),
}
# medial/central words -> the box centre's distance band from the midline |x - 0.5|
_MEDIAL = {"hilar", "hilum", "hila", "perihilar", "paratracheal", "mediastinal", "retrocardiac"}
_LATERAL = {"costophrenic", "peripheral", "pleural", "lateral", "subpleural"}


@dataclass(frozen=True, slots=True)
class LocationTerms:
    """The location constraints a phrase states (all optional).

    ``side``: ``right`` / ``left`` (the patient's) or ``bilateral``; ``levels``: the y-bands
    of the box centre its level words allow (any may hold); ``medial`` / ``lateral``: the
    box centre lies near / away from the midline.
    """

    side: str | None = None
    levels: tuple[tuple[float, float], ...] = ()
    medial: bool = False
    lateral: bool = False

    @property
    def empty(self) -> bool:
        return self.side is None and not self.levels and not self.medial and not self.lateral


def location_terms(phrase: str) -> LocationTerms:
    """The constraints stated by ``phrase`` (lower-cased words; unknown words ignored).

    "right and left", "both" and "bilateral" mean bilateral; "right" alone the patient's
    right. Never raises; an empty phrase gives :class:`LocationTerms` with nothing set.
    """
    words = _WORD.findall(phrase.lower())
    ws = set(words)
    side = None
    if ws & {"bilateral", "bilaterally", "both"} or {"right", "left"} <= ws:
        side = "bilateral"
    elif "right" in ws:
        side = "right"
    elif "left" in ws:
        side = "left"
    levels = tuple(dict.fromkeys(_LEVELS[w] for w in words if w in _LEVELS))
    return LocationTerms(side, levels, bool(ws & _MEDIAL), bool(ws & _LATERAL))


def _box_agreement(box: Box, terms: LocationTerms) -> float:
    cx, cy = (box.x_min + box.x_max) / 2, (box.y_min + box.y_max) / 2
    checks: list[bool] = []
    if terms.side == "right":  # the patient's right: the image's left half
        checks.append(cx < 0.5)
    elif terms.side == "left":
        checks.append(cx >= 0.5)
    if terms.levels:
        checks.append(any(lo <= cy <= hi for lo, hi in terms.levels))
    if terms.medial:
        checks.append(abs(cx - 0.5) <= 0.22)
    if terms.lateral:
        checks.append(abs(cx - 0.5) >= 0.15)
    return sum(checks) / len(checks) if checks else 1.0


def location_agreement(boxes: Sequence[Box], terms: LocationTerms) -> float:
    """How well ``boxes`` (canonical frame) agree with ``terms``, in [0, 1].

    1.0 when the phrase states nothing. No boxes: 0.0 (a location was asked for and none
    is shown), or 1.0 when nothing is stated. ``bilateral``: 1.0 needs boxes on both
    halves (one box spanning the midline counts as both), the level terms averaged in.
    Otherwise the mean over boxes of the share of constraints each box meets.
    """
    if terms.empty:
        return 1.0
    if not boxes:
        return 0.0
    if terms.side == "bilateral":
        spans = any(b.x_min < 0.5 < b.x_max for b in boxes)
        both = spans or (any(b.x_max <= 0.5 for b in boxes) and any(b.x_min >= 0.5 for b in boxes))
        rest = LocationTerms(None, terms.levels, terms.medial, terms.lateral)
        level = 1.0 if rest.empty else sum(_box_agreement(b, rest) for b in boxes) / len(boxes)
        return (float(both) + level) / 2 if not rest.empty else float(both)
    return sum(_box_agreement(b, terms) for b in boxes) / len(boxes)
