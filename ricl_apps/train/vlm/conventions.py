"""Per-episode annotation conventions: make reading the demonstrations necessary.

Sites draw boxes differently: wider or tighter margins around a finding, a systematic
offset (a different crop or centring), one box per side of a bilateral finding or one box
over both. A model trained on a few sites learns their conventions from the query image
alone and then has no reason to look at its demonstrations, so at an external site it
keeps drawing its training sites' boxes (issue 13: the copy test read 0.54 with the
query's own study as the exemplar).

A :class:`Convention` is drawn once per episode and applied to every box the episode
shows: the exemplars' answers and the target. The query image cannot reveal it; only the
exemplars can. Episodes without exemplars keep the sites' own annotations (``k == 0`` is
never given a drawn convention), so zero-shot behaviour is trained on real annotations.

All geometry is in the canonical frame (normalized to the original image); a transformed
box is clipped to the image and keeps its original when clipping would leave no area.
Training only: nothing here runs at evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ricl.boxes.geometry import hull
from ricl.types import Box

if TYPE_CHECKING:
    import numpy as np

    from ricl.retrieval.exemplars import Exemplar

__all__ = ["Convention", "ConventionSpec"]


class ConventionSpec(BaseModel):
    """How conventions are drawn (``episodes.conventions`` in a ``train-vlm`` config).

    ``p``: share of episodes with exemplars that get a drawn convention (the rest show the
    sites' own boxes). ``margin``: range of the margin added on every side, in units of
    the image side (negative: tighter boxes). ``shift``: each of the x and y offsets is
    drawn from ``[-shift, shift]`` (image-side units). ``merge_p``: probability that every
    finding with several boxes is drawn as one box over all of them (the one-box
    convention for bilateral findings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    p: float = Field(0.5, ge=0.0, le=1.0)
    margin: tuple[float, float] = (-0.02, 0.06)
    shift: float = Field(0.04, ge=0.0, le=0.25)
    merge_p: float = Field(0.25, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ranges(self) -> ConventionSpec:
        lo, hi = self.margin
        if not -0.2 <= lo <= hi <= 0.2:
            raise ValueError("margin must be [lo, hi] with -0.2 <= lo <= hi <= 0.2")
        return self

    def draw(self, rng: np.random.Generator) -> Convention | None:
        """A convention for one episode with exemplars, or None (keep the sites' boxes)."""
        if rng.random() >= self.p:
            return None
        lo, hi = self.margin
        return Convention(
            margin=float(rng.uniform(lo, hi)),
            dx=float(rng.uniform(-self.shift, self.shift)),
            dy=float(rng.uniform(-self.shift, self.shift)),
            merge=bool(rng.random() < self.merge_p),
        )


@dataclass(frozen=True)
class Convention:
    """One drawn convention: ``margin`` added on each side, offset ``(dx, dy)``, and
    ``merge`` (one box over each finding's boxes). Image-side units."""

    margin: float = 0.0
    dx: float = 0.0
    dy: float = 0.0
    merge: bool = False

    def box(self, b: Box) -> Box:
        """``b`` under this convention, clipped to the image (``b`` itself when clipping
        would leave no area)."""
        m = self.margin
        x0, y0 = b.x_min - m + self.dx, b.y_min - m + self.dy
        x1, y1 = b.x_max + m + self.dx, b.y_max + m + self.dy
        x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, 1.0), min(y1, 1.0)
        if x1 - x0 < 1e-3 or y1 - y0 < 1e-3:
            return b
        return Box(x0, y0, x1, y1)

    def boxes(self, boxes: Sequence[Box]) -> tuple[Box, ...]:
        """One finding's boxes under this convention (merged first when ``merge``)."""
        if self.merge and len(boxes) > 1:
            merged = hull(boxes)
            boxes = [merged] if merged is not None else list(boxes)
        return tuple(self.box(b) for b in boxes)

    def exemplar(self, e: Exemplar) -> Exemplar:
        """``e`` with every finding's boxes under this convention. A ``matched_region``
        whose box position no longer exists (merged) points at the finding's first box."""
        findings = tuple(replace(f, boxes=self.boxes(f.boxes)) for f in e.findings)
        matched = e.matched_region
        if matched is not None:
            pos, j = matched
            if pos < len(findings) and j >= len(findings[pos].boxes):
                matched = (pos, 0)
        return replace(e, findings=findings, matched_region=matched)
