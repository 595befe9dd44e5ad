"""Synthetic frontal chest anatomy (geometry only) and the anatomical zones.

Frames. *Canonical* coordinates are pixel coordinates (x to the right, y down) of an
upright, centred patient in an image of ``width`` x ``height``; anatomy parameters are
fractions of the width (x) and of the height (y). A :class:`Pose` (small rotation,
scale and shift) maps canonical points to *output* pixels; :func:`canonical_grid` gives,
for every output pixel, the canonical point it shows. Every shape is therefore drawn
directly on the output grid, and every drawn footprint (hence every box) already
includes the pose.

Radiological convention: the patient's RIGHT is the IMAGE LEFT. In every per-side tuple
index 0 (:data:`RIGHT`) is the patient's right (image left) and index 1 (:data:`LEFT`)
the patient's left (image right).

This module holds the pose, the anatomy parameters and their sampling, the soft lung and
heart masks and the zone geometry; the drawing of the anatomy is in
:mod:`~ricl.data.phantom.layers`. All arrays are ``float32`` of shape ``(rows, cols)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "LEFT",
    "RIGHT",
    "Anatomy",
    "Pose",
    "canonical_grid",
    "dome_y",
    "heart_mask",
    "heart_rect",
    "lung_mask",
    "lung_rect",
    "sample_anatomy",
    "sample_point_in_zone",
    "sample_pose",
    "window",
    "zone_rect",
]

RIGHT, LEFT = 0, 1
_HEART_TILT = math.radians(28.0)
Pair = tuple[float, float]
Rect = tuple[float, float, float, float]  # canonical px: x0, y0, x1, y1


@dataclass(frozen=True, slots=True)
class Pose:
    """Canonical -> output map: rotate by ``angle_deg`` and scale about the image centre,
    then shift by ``(shift_x, shift_y)`` output pixels."""

    angle_deg: float = 0.0
    scale: float = 1.0
    shift_x: float = 0.0
    shift_y: float = 0.0

    def to_output(
        self, x: np.ndarray, y: np.ndarray, width: int, height: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Canonical points (any shape) -> output pixel coordinates (same shape)."""
        cx, cy = width / 2.0, height / 2.0
        c, s = math.cos(math.radians(self.angle_deg)), math.sin(math.radians(self.angle_deg))
        dx, dy = (np.asarray(x) - cx) * self.scale, (np.asarray(y) - cy) * self.scale
        return cx + c * dx - s * dy + self.shift_x, cy + s * dx + c * dy + self.shift_y


def sample_pose(rng: np.random.Generator, width: int, height: int) -> Pose:
    """A slight patient rotation (+-3 degrees), scale jitter (+-6 %) and shift (+-2 %)."""
    return Pose(
        angle_deg=float(rng.uniform(-3.0, 3.0)),
        scale=float(rng.uniform(0.94, 1.06)),
        shift_x=float(rng.uniform(-0.02, 0.02) * width),
        shift_y=float(rng.uniform(-0.02, 0.02) * height),
    )


def canonical_grid(width: int, height: int, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    """``(U, V)``: float32 arrays of shape ``(height, width)`` holding the canonical x and y
    of every output pixel centre (the inverse of :meth:`Pose.to_output`)."""
    cx, cy = width / 2.0, height / 2.0
    c, s = math.cos(math.radians(pose.angle_deg)), math.sin(math.radians(pose.angle_deg))
    xo = (np.arange(width, dtype=np.float32) + 0.5 - cx - pose.shift_x)[None, :] / pose.scale
    yo = (np.arange(height, dtype=np.float32) + 0.5 - cy - pose.shift_y)[:, None] / pose.scale
    u = (cx + c * xo) + s * yo
    v = (cy - s * xo) + c * yo
    return u.astype(np.float32, copy=False), v.astype(np.float32, copy=False)


def window(pose: Pose, width: int, height: int, rect: Rect, margin: float) -> tuple[slice, slice]:
    """Output-pixel ``(rows, cols)`` slices covering canonical ``rect`` plus ``margin`` px,
    clipped to the image (possibly empty)."""
    x0, y0, x1, y1 = rect
    ox, oy = pose.to_output(np.array([x0, x1, x0, x1]), np.array([y0, y0, y1, y1]), width, height)
    c0 = max(0, math.floor(float(ox.min()) - margin))
    c1 = min(width, math.ceil(float(ox.max()) + margin) + 1)
    r0 = max(0, math.floor(float(oy.min()) - margin))
    r1 = min(height, math.ceil(float(oy.max()) + margin) + 1)
    return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))


@dataclass(frozen=True, slots=True)
class Anatomy:
    """One patient's anatomy. x values are fractions of the width, y values of the height."""

    width: int
    height: int
    tissue: float  # soft-tissue attenuation
    lung_dark: float  # attenuation removed inside the lung fields
    body_half: float  # half width of the thorax
    neck_half: float
    shoulder_y: float  # y where the neck has widened into the thorax
    lung_xc: Pair
    lung_rx: Pair  # half width of each lung field
    lung_top: Pair  # apex
    lung_ry: Pair  # half height of the rounded apical part
    dome_base: Pair  # y of the costophrenic angle
    dome_height: Pair  # rise of the diaphragm dome above the angle
    heart_xc: float
    heart_yc: float
    heart_rx: float
    heart_ry: float
    hilum: tuple[Pair, Pair]  # (x, y) of each hilum
    rib_top: float
    rib_spacing: float
    rib_width: float  # fraction of the spacing
    rib_amp: float
    clavicle_amp: float

    def lung_height(self, side: int) -> float:
        return self.dome_base[side] - self.lung_top[side]


def sample_anatomy(rng: np.random.Generator, width: int, height: int) -> Anatomy:
    """Draw a plausible adult anatomy (normal heart size: cardiothoracic ratio ~0.40-0.47)."""
    u = rng.uniform
    xo, rx = u(0.185, 0.21), (u(0.15, 0.17), u(0.145, 0.165))
    top = u(0.08, 0.12)
    tops = (top, top + u(-0.005, 0.01))
    base_r = u(0.76, 0.81)
    base = (base_r, base_r + u(0.0, 0.03))
    dh = (u(0.07, 0.10), u(0.06, 0.09))
    ry = (u(0.17, 0.22),) * 2
    xc = (0.5 - xo, 0.5 + xo)
    lh = (base[0] - tops[0], base[1] - tops[1])
    heart_rx = u(0.15, 0.17)
    return Anatomy(
        width=width,
        height=height,
        tissue=u(0.42, 0.52),
        lung_dark=u(0.27, 0.34),
        body_half=u(0.41, 0.46),
        neck_half=u(0.10, 0.13),
        shoulder_y=u(0.10, 0.16),
        lung_xc=xc,
        lung_rx=rx,
        lung_top=tops,
        lung_ry=ry,
        dome_base=base,
        dome_height=dh,
        heart_xc=0.5 + u(0.045, 0.07),
        heart_yc=base[1] - dh[1] - u(0.075, 0.095),
        heart_rx=heart_rx,
        heart_ry=u(0.11, 0.13),
        hilum=(
            (xc[0] + 0.72 * rx[0], tops[0] + 0.46 * lh[0]),
            (xc[1] - 0.70 * rx[1], tops[1] + 0.43 * lh[1]),
        ),
        rib_top=top - u(0.0, 0.02),
        rib_spacing=u(0.062, 0.072),
        rib_width=u(0.38, 0.48),
        rib_amp=u(0.05, 0.08),
        clavicle_amp=u(0.06, 0.10),
    )


# ----------------------------------------------------------------------------- masks
def _ramp(x: np.ndarray, edge: float) -> np.ndarray:
    """0 -> 1 linear ramp of width ``edge`` px centred on x = 0."""
    return np.clip(x * (1.0 / edge) + 0.5, 0.0, 1.0)


def dome_y(anat: Anatomy, side: int, u: np.ndarray) -> np.ndarray:
    """Canonical y (px) of the hemidiaphragm under canonical x ``u`` (px), any shape: a
    parabola from the costophrenic angle up to a dome peak, flat from the peak medially."""
    w, h = anat.width, anat.height
    sign = 1.0 if side == RIGHT else -1.0  # +1 when medial is towards larger x
    medial = (anat.lung_xc[side] + sign * anat.lung_rx[side]) * w
    span = 1.15 * anat.lung_rx[side] * w
    q = np.clip((medial - sign * 0.45 * span - u) * (sign / span), 0.0, 1.0)
    return (anat.dome_base[side] - anat.dome_height[side] * (1.0 - q * q)) * h


def lung_mask(
    anat: Anatomy,
    side: int,
    u: np.ndarray,
    v: np.ndarray,
    shrink: float | np.ndarray = 0.0,
    edge: float = 1.5,
) -> np.ndarray:
    """Soft mask in [0, 1] of one lung field on canonical grids ``u, v`` (same shape).

    The field is a rounded apex (half ellipse) over straight walls, cut below by the dome;
    ``shrink`` (px, scalar or array like ``u``) moves the whole boundary inwards.
    """
    w, h = anat.width, anat.height
    sign = 1.0 if side == RIGHT else -1.0
    medial = (anat.lung_xc[side] + sign * anat.lung_rx[side]) * w
    s = np.clip((v - anat.lung_top[side] * h) * (1.0 / (anat.lung_height(side) * h)), 0.0, 1.0)
    rx_full = anat.lung_rx[side] * w * (0.84 + 0.16 * s)  # the lung widens towards the base
    rx = rx_full - shrink
    ry = anat.lung_ry[side] * h - shrink
    dx = (u - (medial - sign * rx_full)) / rx
    dy = np.minimum((v - (anat.lung_top[side] + anat.lung_ry[side]) * h) / ry, 0.0)
    e = dx * dx + dy * dy
    grad = 2.0 * np.sqrt((dx / rx) ** 2 + (dy / ry) ** 2) + 1e-6
    inside = _ramp((1.0 - e) / grad, edge)
    below = _ramp(dome_y(anat, side, u) - shrink - v, edge)
    return (inside * below).astype(np.float32, copy=False)


def heart_mask(anat: Anatomy, u: np.ndarray, v: np.ndarray, edge: float = 1.5) -> np.ndarray:
    """Soft mask in [0, 1] of the cardiac silhouette (ellipse resting on the diaphragm)."""
    w, h = anat.width, anat.height
    rx, ry = anat.heart_rx * w, anat.heart_ry * h
    c, s = math.cos(_HEART_TILT), math.sin(_HEART_TILT)
    px, py = u - anat.heart_xc * w, v - anat.heart_yc * h
    dx, dy = (c * px + s * py) / rx, (c * py - s * px) / ry  # long axis points down-right
    e = dx * dx + dy * dy
    grad = 2.0 * np.sqrt((dx / rx) ** 2 + (dy / ry) ** 2) + 1e-6
    floor = (anat.dome_base[LEFT] - 0.75 * anat.dome_height[LEFT]) * h
    return (_ramp((1.0 - e) / grad, edge) * _ramp(floor - v, edge)).astype(np.float32, copy=False)


def heart_rect(anat: Anatomy) -> Rect:
    w, h = anat.width, anat.height
    r = max(anat.heart_rx * w, anat.heart_ry * h)
    return (
        anat.heart_xc * w - r,
        anat.heart_yc * h - r,
        anat.heart_xc * w + r,
        (anat.dome_base[LEFT] - 0.7 * anat.dome_height[LEFT]) * h,
    )


def lung_rect(anat: Anatomy, side: int) -> Rect:
    w, h = anat.width, anat.height
    xc, rx = anat.lung_xc[side] * w, anat.lung_rx[side] * w
    return (xc - rx, anat.lung_top[side] * h, xc + rx, anat.dome_base[side] * h)


# ----------------------------------------------------------------------------- zones
_ZONE_SIDE = {"right": RIGHT, "left": LEFT}
_LOBE_BANDS = {"upper": (0.12, 0.38), "middle": (0.40, 0.60), "lower": (0.62, 0.86)}


def zone_rect(anat: Anatomy, zone: str) -> Rect:
    """Canonical-px rectangle of an anatomical zone (a location string of LOCATIONS,
    except ``"bilateral"``). Lobes are drawn as the classic radiographic zones."""
    w, h = anat.width, anat.height
    if zone == "cardiac":
        return heart_rect(anat)
    if zone == "lingula":
        zone = "left middle lobe"
    side = _ZONE_SIDE[zone.split()[0]]
    x0, y0, x1, y1 = lung_rect(anat, side)
    lh = y1 - y0
    lateral_left = side == RIGHT  # the right lung's lateral wall is on the image left
    if zone.endswith("lobe"):
        a, b = _LOBE_BANDS[zone.split()[1]]
        pad = 0.15 * (x1 - x0)
        return (x0 + pad, y0 + a * lh, x1 - pad, y0 + b * lh)
    if zone.endswith("apex"):
        return (x0, y0, x1, y0 + 0.3 * lh)
    if zone.endswith("costophrenic angle"):
        half = 0.55 * (x1 - x0)
        xs = (x0, x0 + half) if lateral_left else (x1 - half, x1)
        return (xs[0], y1 - 0.3 * lh, xs[1], y1)
    if zone.endswith("hilum"):
        hx, hy = anat.hilum[side]
        return (hx * w - 0.04 * w, hy * h - 0.04 * h, hx * w + 0.04 * w, hy * h + 0.04 * h)
    raise KeyError(f"unknown zone {zone!r}")


def sample_point_in_zone(
    anat: Anatomy,
    zone: str,
    rng: np.random.Generator,
    min_lung: float = 0.95,
    clearance: float = 0.0,
    tries: int = 60,
) -> tuple[float, float]:
    """A canonical point (px) inside ``zone``, well inside the lung and at least
    ``clearance`` px off the heart (rejection sampling; falls back to the zone centre)."""
    x0, y0, x1, y1 = zone_rect(anat, zone)
    side = LEFT if zone.startswith("left") or zone == "lingula" else RIGHT
    c = max(clearance, 1.0)
    offs = np.array([[0.0, 0.0], [c, 0.0], [-c, 0.0], [0.0, c], [0.0, -c]], np.float32)
    for _ in range(tries):
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        px, py = x + offs[:, 0], y + offs[:, 1]
        if (
            lung_mask(anat, side, px[:1], py[:1], shrink=0.02 * anat.width)[0] >= min_lung
            and float(heart_mask(anat, px, py).max()) < 0.05
        ):
            return float(x), float(y)
    return (x0 + x1) / 2.0, (y0 + y1) / 2.0
