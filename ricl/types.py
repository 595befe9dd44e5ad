"""Canonical data types shared by every part of ricl.

There is exactly one box frame in ricl: :class:`Box` holds normalized
``x_min, y_min, x_max, y_max`` on the ORIGINAL image (0 = left/top edge,
1 = right/bottom edge). Every reader converts into it, every codec converts
out of it and back, and every metric consumes it.

This module imports only the standard library so that ``import ricl`` stays light.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ricl.errors import InvalidBoxError

__all__ = [
    "Box",
    "Finding",
    "Instance",
    "Prediction",
    "PredictionStatus",
    "Study",
    "boxes_from_lists",
    "boxes_to_lists",
]


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned box, normalized to the original image.

    Invariants (checked on construction): all four values finite,
    ``0 <= x_min < x_max <= 1`` and ``0 <= y_min < y_max <= 1``.

    Raises:
        InvalidBoxError: naming the offending value, when an invariant is broken.
            Use :meth:`Box.clip` for model outputs that may be slightly out of range.
    """

    x_min: float
    y_min: float
    x_max: float
    y_max: float

    def __post_init__(self) -> None:
        for name in ("x_min", "y_min", "x_max", "y_max"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise InvalidBoxError(f"{name}={v!r} is not a number")
            if not math.isfinite(v):
                raise InvalidBoxError(f"{name}={v!r} is not finite")
            object.__setattr__(self, name, float(v))
            if v < 0.0 or v > 1.0:
                raise InvalidBoxError(
                    f"{name}={v!r} is outside [0, 1]; boxes are normalized to the original "
                    "image (use Box.clip for model outputs slightly out of range)"
                )
        if not self.x_min < self.x_max:
            raise InvalidBoxError(
                f"x_min={self.x_min!r} must be < x_max={self.x_max!r} (empty or inverted box)"
            )
        if not self.y_min < self.y_max:
            raise InvalidBoxError(
                f"y_min={self.y_min!r} must be < y_max={self.y_max!r} (empty or inverted box)"
            )

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_list(cls, values: Sequence[float]) -> Box:
        """Build from ``[x_min, y_min, x_max, y_max]`` (normalized). Raises InvalidBoxError."""
        if len(values) != 4:
            raise InvalidBoxError(f"expected 4 values [x_min, y_min, x_max, y_max], got {values!r}")
        return cls(*(float(v) if not isinstance(v, bool) else v for v in values))

    @classmethod
    def from_pixels(
        cls, x_min: float, y_min: float, x_max: float, y_max: float, width: int, height: int
    ) -> Box:
        """Build from pixel corners on an image of ``width`` x ``height``."""
        if width <= 0 or height <= 0:
            raise InvalidBoxError(f"image size must be positive, got {width}x{height}")
        return cls(x_min / width, y_min / height, x_max / width, y_max / height)

    @classmethod
    def from_xywh_pixels(
        cls, x: float, y: float, w: float, h: float, width: int, height: int
    ) -> Box:
        """Build from a top-left corner plus width/height in pixels (the MS-CXR convention)."""
        return cls.from_pixels(x, y, x + w, y + h, width, height)

    @classmethod
    def clip(cls, x_min: float, y_min: float, x_max: float, y_max: float) -> tuple[Box, bool]:
        """Repair a model output: swap inverted corners, clip to [0, 1].

        Returns ``(box, changed)`` where ``changed`` says whether anything was swapped
        or clipped (callers count these). Raises InvalidBoxError when a value is not
        finite or the box has no area after clipping.
        """
        vals = (x_min, y_min, x_max, y_max)
        for name, v in zip(("x_min", "y_min", "x_max", "y_max"), vals):
            if not math.isfinite(float(v)):
                raise InvalidBoxError(f"{name}={v!r} is not finite; cannot clip")
        x0, x1 = sorted((float(x_min), float(x_max)))
        y0, y1 = sorted((float(y_min), float(y_max)))
        c = (
            min(max(x0, 0.0), 1.0),
            min(max(y0, 0.0), 1.0),
            min(max(x1, 0.0), 1.0),
            min(max(y1, 0.0), 1.0),
        )
        changed = c != tuple(float(v) for v in vals)
        return cls(*c), changed

    # ------------------------------------------------------------------ views
    @property
    def width(self) -> float:
        return self.x_max - self.x_min

    @property
    def height(self) -> float:
        return self.y_max - self.y_min

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x_min + self.x_max) / 2, (self.y_min + self.y_max) / 2)

    def to_list(self) -> list[float]:
        """``[x_min, y_min, x_max, y_max]``, normalized."""
        return [self.x_min, self.y_min, self.x_max, self.y_max]

    def to_pixels(self, width: int, height: int) -> tuple[float, float, float, float]:
        """Corners in pixels of an image of ``width`` x ``height`` (floats, not rounded)."""
        return (self.x_min * width, self.y_min * height, self.x_max * width, self.y_max * height)


def boxes_from_lists(values: Iterable[Sequence[float]]) -> tuple[Box, ...]:
    """``[[x_min, y_min, x_max, y_max], ...]`` -> tuple of Box. Raises InvalidBoxError."""
    return tuple(Box.from_list(v) for v in values)


def boxes_to_lists(boxes: Iterable[Box]) -> list[list[float]]:
    return [b.to_list() for b in boxes]


@dataclass(frozen=True, slots=True)
class Finding:
    """One report sentence of a study, with its grounding when it has one.

    ``index`` is the position of the finding in its study's ``findings`` list (stable id).
    ``boxes`` are the primary reader's boxes; ``extra_boxes`` a second reader's (may be empty).
    Negative findings (``abnormal=False``) have no boxes, labels or locations.
    """

    index: int
    sentence_en: str
    sentence_es: str = ""
    abnormal: bool = False
    boxes: tuple[Box, ...] = ()
    extra_boxes: tuple[Box, ...] = ()
    labels: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()
    progression: str | None = None
    label_group: str | None = None


@dataclass(frozen=True, slots=True)
class Study:
    """One imaging study (one frontal image) with its grounded report.

    ``image_path`` is relative to the dataset's images root (never absolute).
    ``image_size`` is ``(width, height)`` in pixels of the original image, or None
    when the image was not available to the reader.
    ``metadata`` keeps every other column of the source tables, as strings.
    """

    study_id: str
    image_id: str
    patient_id: str
    split: str
    image_path: str
    findings: tuple[Finding, ...] = ()
    image_size: tuple[int, int] | None = None
    previous_study_id: str | None = None
    previous_image_id: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_normal(self) -> bool:
        return not any(f.abnormal for f in self.findings)


@dataclass(frozen=True, slots=True)
class Instance:
    """One phrase-grounding instance: an image, a phrase, and the gold boxes (may be empty).

    ``instance_id`` is unique within a dataset (``<study_id>/<finding_index>`` for
    PadChest-GR). ``extra_boxes`` is the alternative reference when the dataset has one.
    """

    instance_id: str
    dataset: str
    study_id: str
    image_id: str
    patient_id: str
    split: str
    image_path: str
    phrase: str
    boxes: tuple[Box, ...]
    image_size: tuple[int, int] | None = None
    finding_index: int = 0
    extra_boxes: tuple[Box, ...] = ()
    labels: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()
    label_group: str | None = None
    sentence_es: str = ""


PredictionStatus = Literal["ok", "empty", "parse_error", "error"]


@dataclass(frozen=True, slots=True)
class Prediction:
    """A model's answer for one (image, phrase) query, in the canonical frame.

    ``status``: ``ok`` (boxes parsed), ``empty`` (the model said there is nothing),
    ``parse_error`` (the answer could not be read; ``raw`` keeps it), ``error``
    (transport or backend failure). ``scores`` is empty or one score per box.
    """

    image_id: str
    phrase: str
    boxes: tuple[Box, ...] = ()
    scores: tuple[float, ...] = ()
    status: PredictionStatus = "ok"
    raw: str | None = None

    def __post_init__(self) -> None:
        if self.scores and len(self.scores) != len(self.boxes):
            raise ValueError(
                f"prediction for {self.image_id!r}: {len(self.scores)} scores for "
                f"{len(self.boxes)} boxes"
            )
