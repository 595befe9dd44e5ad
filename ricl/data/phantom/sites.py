"""Acquisition sites of the phantom generator: how one hospital's images, annotations and
report wording differ from another's.

A :class:`SiteStyle` holds what a query image alone cannot reveal but same-site exemplars
can: how faint the findings are, whether sentences name the location, how tightly boxes
are drawn (margin, one box or one per side for bilateral findings), the acquisition
(magnification, centring, contrast, inversion) and the wording of the report.

:data:`SITES` has the named sites: ``default`` (the generator's historic behaviour, byte for
byte), three internal training sites ``A``, ``B`` and ``C``, and an external site ``X``
whose margin, magnification, centring, contrast, inversion rate and wording lie outside
the internal ones (for external validation). Where each parameter acts:

* plan (:mod:`~ricl.data.phantom.plan`): ``faint_fraction``/``faint_level`` set a finding's
  contrast, ``no_location_fraction`` and ``wording`` choose its sentence,
  ``invert_fraction`` the inverted studies, and ``magnification``/``centre_shift``/
  ``contrast`` go into every study's render spec;
* annotation (:func:`annotate_boxes`, called by the writer): ``bilateral_single_box``,
  ``box_margin`` and ``box_margin_jitter``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ricl.errors import RiclError, UnknownNameError

__all__ = [
    "EXTERNAL_SITES",
    "INTERNAL_SITES",
    "SITES",
    "SITE_SIDECAR",
    "WORDINGS",
    "SiteStyle",
    "SiteStyleError",
    "annotate_boxes",
    "get_site",
]

SITE_SIDECAR = "ricl_site.json"  # written by the release writer next to master_table.csv
WORDINGS: tuple[str, ...] = ("standard", "terse", "verbose", "structured")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_Box = tuple[int, int, int, int]


class SiteStyleError(RiclError, ValueError):
    """A site style's parameters are invalid; the message names the parameter."""


def _num(name: str, value: Any, lo: float, hi: float, lo_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise SiteStyleError(f"site style: {name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < lo or v > hi or (lo_open and v == lo):
        bracket = "(" if lo_open else "["
        raise SiteStyleError(f"site style: {name} must be in {bracket}{lo}, {hi}], got {value!r}")
    return v


@dataclass(frozen=True, slots=True)
class SiteStyle:
    """One site's style (validated on construction; :meth:`to_dict`/:meth:`from_dict` are
    the JSON form). Fractions are shares of findings/sentences/studies; sizes and shifts
    are fractions of the image width (x) and height (y).

    faint_fraction: share of findings (all but cardiomegaly) drawn faint.
    faint_level: contrast of a faint finding relative to a normal one (its attenuation is
        multiplied by this), so it sits close to the anatomy and the noise.
    no_location_fraction: share of positive sentences (all but cardiomegaly, which has no
        location words anyway) naming the finding type only; the record's ``locations``
        still hold the true location.
    box_margin: margin the site's annotators add on every side of the drawn footprint.
    box_margin_jitter: each edge's margin varies uniformly by up to this much (>= 0 total).
    bilateral_single_box: a bilateral finding is annotated as one box spanning both sides
        (else one box per side).
    magnification: scale of the body in the frame (on top of the per-study +-6 % jitter).
    centre_shift: (x, y) systematic shift of the body (on top of the +-2 % jitter).
    contrast: multiplies every study's display gamma (> 1 darkens the mid-tones).
    invert_fraction: share of studies stored inverted (MONOCHROME1-like).
    wording: sentence templates, one of :data:`WORDINGS`.
    """

    name: str = "default"
    faint_fraction: float = 0.0
    faint_level: float = 1.0
    no_location_fraction: float = 0.0
    box_margin: float = 0.0
    box_margin_jitter: float = 0.0
    bilateral_single_box: bool = False
    magnification: float = 1.0
    centre_shift: tuple[float, float] = (0.0, 0.0)
    contrast: float = 1.0
    invert_fraction: float = 0.03
    wording: str = "standard"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise SiteStyleError(
                f"site style: name must be 1-64 letters, digits, '_', '-' or '.', got {self.name!r}"
            )
        checks = {
            "faint_fraction": (0.0, 1.0, False),
            "faint_level": (0.0, 1.0, True),
            "no_location_fraction": (0.0, 1.0, False),
            "box_margin": (0.0, 0.2, False),
            "box_margin_jitter": (0.0, 0.1, False),
            "magnification": (0.5, 1.5, False),
            "contrast": (0.25, 4.0, False),
            "invert_fraction": (0.0, 1.0, False),
        }
        for key, (lo, hi, lo_open) in checks.items():
            object.__setattr__(self, key, _num(key, getattr(self, key), lo, hi, lo_open))
        if not isinstance(self.bilateral_single_box, bool):
            raise SiteStyleError(
                f"site style: bilateral_single_box must be true or false, "
                f"got {self.bilateral_single_box!r}"
            )
        shift = self.centre_shift
        if isinstance(shift, (str, bytes)) or not isinstance(shift, Sequence) or len(shift) != 2:
            raise SiteStyleError(f"site style: centre_shift must be (x, y), got {shift!r}")
        object.__setattr__(
            self,
            "centre_shift",
            tuple(_num(f"centre_shift[{i}]", v, -0.2, 0.2) for i, v in enumerate(shift)),
        )
        if self.wording not in WORDINGS:
            raise SiteStyleError(
                f"site style: wording must be one of {', '.join(WORDINGS)}, got {self.wording!r}"
            )

    # ------------------------------------------------------------------ JSON form
    def to_dict(self) -> dict[str, Any]:
        """The parameters as a JSON-able dict (``centre_shift`` as a list)."""
        d = asdict(self)
        d["centre_shift"] = list(self.centre_shift)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SiteStyle:
        """A style from :meth:`to_dict`'s form; missing keys take the default site's values."""
        if not isinstance(data, Mapping):
            raise SiteStyleError(f"site style: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SiteStyleError(
                f"site style: unknown parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**dict(data))

    # ------------------------------------------------------------------ derived
    @property
    def is_default(self) -> bool:
        """True for exactly the default site (the historic generator, byte for byte)."""
        return self == SITES["default"]

    @property
    def stream_key(self) -> int:
        """A stable 63-bit key of the whole style (name and parameters). The planner mixes
        it into the seed of every non-default site, so two releases of different sites (or
        seeds) draw different patients and identifiers and can be merged into one pool."""
        digest = hashlib.sha256(self.to_json().encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") >> 1


SITES: dict[str, SiteStyle] = {
    "default": SiteStyle(),
    # internal training sites: every parameter varies between them
    "A": SiteStyle(
        name="A",
        faint_fraction=0.5,
        faint_level=0.3,
        no_location_fraction=0.5,
        box_margin=0.01,
        box_margin_jitter=0.004,
        bilateral_single_box=False,
        magnification=1.0,
        centre_shift=(0.0, 0.0),
        contrast=1.0,
        invert_fraction=0.02,
        wording="standard",
    ),
    "B": SiteStyle(
        name="B",
        faint_fraction=0.4,
        faint_level=0.25,
        no_location_fraction=0.6,
        box_margin=0.02,
        box_margin_jitter=0.006,
        bilateral_single_box=True,
        magnification=0.92,
        centre_shift=(0.02, 0.01),
        contrast=1.15,
        invert_fraction=0.0,
        wording="terse",
    ),
    "C": SiteStyle(
        name="C",
        faint_fraction=0.6,
        faint_level=0.2,
        no_location_fraction=0.4,
        box_margin=0.0,
        box_margin_jitter=0.002,
        bilateral_single_box=False,
        magnification=1.06,
        centre_shift=(-0.02, 0.015),
        contrast=0.85,
        invert_fraction=0.05,
        wording="verbose",
    ),
    # external validation site: margin, jitter, magnification, centring, contrast,
    # inversion rate and wording all lie outside the range of A, B and C
    "X": SiteStyle(
        name="X",
        faint_fraction=0.5,
        faint_level=0.25,
        no_location_fraction=0.5,
        box_margin=0.045,
        box_margin_jitter=0.012,
        bilateral_single_box=True,
        magnification=0.82,
        centre_shift=(0.05, -0.04),
        contrast=1.45,
        invert_fraction=0.2,
        wording="structured",
    ),
}
INTERNAL_SITES: tuple[str, ...] = ("A", "B", "C")
EXTERNAL_SITES: tuple[str, ...] = ("X",)


def get_site(site: str | SiteStyle | Path) -> SiteStyle:
    """The style of ``site``: a :class:`SiteStyle`, a name of :data:`SITES` (case-insensitive)
    or the path of a ``.json`` file holding :meth:`SiteStyle.to_dict`'s form (such as a
    release's ``ricl_site.json``, whose ``"site"`` entry is used).

    Raises UnknownNameError (listing the known sites) for anything else."""
    if isinstance(site, SiteStyle):
        return site
    text = str(site)
    if text in SITES:
        return SITES[text]
    folded = {k.lower(): v for k, v in SITES.items()}
    if text.lower() in folded:
        return folded[text.lower()]
    path = Path(text)
    if path.suffix.lower() == ".json" and path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SiteStyleError(f"{path}: not a readable JSON site style ({exc})") from exc
        if isinstance(data, dict) and isinstance(data.get("site"), dict):
            data = data["site"]
        try:
            return SiteStyle.from_dict(data)
        except SiteStyleError as exc:
            raise SiteStyleError(f"{path}: {exc}") from exc
    raise UnknownNameError(
        f"unknown phantom site {text!r}; known sites: {', '.join(SITES)} "
        "(or the path of a .json site style)"
    )


def annotate_boxes(
    boxes: Sequence[_Box],
    style: SiteStyle,
    width: int,
    height: int,
    rng: np.random.Generator | None,
    bilateral: bool,
) -> tuple[_Box, ...]:
    """The site's annotation of a finding's drawn (tight) pixel boxes.

    A bilateral finding becomes one box spanning both sides under ``bilateral_single_box``;
    every box then grows by ``box_margin`` (+- ``box_margin_jitter``, drawn per edge from
    ``rng``) of the image width (x edges) or height (y edges), rounded to whole pixels and
    clipped to the image. The default site returns the boxes unchanged.
    """
    out = [tuple(int(v) for v in b) for b in boxes]
    if bilateral and style.bilateral_single_box and len(out) > 1:
        out = [
            (
                min(b[0] for b in out),
                min(b[1] for b in out),
                max(b[2] for b in out),
                max(b[3] for b in out),
            )
        ]
    if style.box_margin == 0.0 and style.box_margin_jitter == 0.0:
        return tuple(out)  # type: ignore[arg-type]
    grown: list[_Box] = []
    for x0, y0, x1, y1 in out:
        m = np.full(4, style.box_margin)
        if style.box_margin_jitter > 0.0:
            if rng is None:
                raise ValueError("annotate_boxes: box_margin_jitter needs a generator")
            m = m + style.box_margin_jitter * rng.uniform(-1.0, 1.0, 4)
        m = np.maximum(m, 0.0) * np.array([width, height, width, height])
        a, b, c, d = (round(float(v)) for v in m)
        grown.append((max(0, x0 - a), max(0, y0 - b), min(width, x1 + c), min(height, y1 + d)))
    return tuple(grown)
