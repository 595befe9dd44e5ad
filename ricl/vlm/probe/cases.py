"""The probe's images: phantom radiographs with large findings whose boxes are known.

Four shapes, so that box frames which agree on a square image disagree here: a square, a
portrait and a landscape image, and a square canvas whose radiograph is letterboxed inside
black bars (as many archives store them). Each case has its own phrase, so an answer can
be matched to its case by the phrase alone. Rendering is deterministic (fixed seeds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ricl.types import Box

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["ProbeCase", "probe_cases"]

# name, (width, height) of the radiograph, (canvas height or 0), finding type, zone, phrase
_SPECS = (
    ("square", (448, 448), 0, "pneumothorax", "left apex", "large left pneumothorax"),
    ("portrait", (384, 512), 0, "cardiomegaly", "cardiac", "cardiomegaly"),
    (
        "landscape",
        (560, 400),
        0,
        "pleural effusion",
        "right costophrenic angle",
        "large right pleural effusion",
    ),
    ("letterboxed", (448, 300), 448, "pneumothorax", "right apex", "large right pneumothorax"),
)


@dataclass(frozen=True)
class ProbeCase:
    """One probe image: ``image`` (RGB, ``size`` = (width, height)), the ``phrase`` asked
    and its gold ``boxes`` (canonical: normalized on this image)."""

    name: str
    phrase: str
    image: Image.Image
    boxes: tuple[Box, ...]

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.size[0]), int(self.image.size[1])


def probe_cases(scale: float = 1.0) -> list[ProbeCase]:
    """The four probe cases, sides multiplied by ``scale`` (e.g. 0.25 for a model trained on
    small images; the boxes scale with them). Raises ValueError unless ``scale`` > 0."""
    import numpy as np
    from PIL import Image

    from ricl.data.images import window_to_uint8
    from ricl.data.phantom.findings import FindingSpec, StudySpec, render_study

    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    cases = []
    for i, (name, (w, h), canvas_h, ftype, zone, phrase) in enumerate(_SPECS):
        w, h = max(32, round(w * scale)), max(32, round(h * scale))
        canvas_h = max(h, round(canvas_h * scale)) if canvas_h else h
        finding = FindingSpec(ftype, (zone,), 0.95, geom_seed=100 + i)
        study = render_study(
            StudySpec(
                w, h, anatomy_seed=10 + i, study_seed=20 + i, inverted=False, findings=(finding,)
            )
        )
        pixels = window_to_uint8(study.pixels.astype(np.float32))
        top = (canvas_h - h) // 2
        full = np.zeros((canvas_h, w), np.uint8)
        full[top : top + h] = pixels
        boxes = tuple(
            Box(x0 / w, (y0 + top) / canvas_h, x1 / w, (y1 + top) / canvas_h)
            for x0, y0, x1, y1 in study.boxes[0]
        )
        cases.append(ProbeCase(name, phrase, Image.fromarray(full).convert("RGB"), boxes))
    return cases
