"""How each finding type is drawn, and how a whole study is rendered.

Every drawer works on a small output-pixel window and returns the attenuation it adds
(``delta``) and its footprint (``footprint``, >= 0, same shape). A finding's box is the
bounding box of its footprint after the same Gaussian blur as the image, thresholded at
15 % of its peak: it is therefore exact for the drawn (posed, clipped) finding.
A bilateral finding is drawn once per side and gets one box per side. The boxes are the
drawn footprints; a site's annotation style (margins, one box for both sides) is applied
by the writer (:func:`~ricl.data.phantom.sites.annotate_boxes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from ricl.data.phantom.anatomy import (
    LEFT,
    RIGHT,
    Anatomy,
    Pose,
    canonical_grid,
    heart_mask,
    heart_rect,
    lung_mask,
    lung_rect,
    sample_anatomy,
    sample_point_in_zone,
    sample_pose,
    window,
)
from ricl.data.phantom.layers import AnatomyLayers, render_anatomy

__all__ = [
    "FindingSpec",
    "PixelBox",
    "RenderedStudy",
    "StudySpec",
    "render_study",
    "size_cm",
]
PixelBox = tuple[int, int, int, int]  # x0, y0, x1, y1 in output pixels, x1/y1 exclusive
_THORAX_CM = 36.0  # width of the image in cm, for the sizes quoted in sentences


@dataclass(frozen=True, slots=True)
class FindingSpec:
    """One positive finding to draw: its type, zone(s) (two for bilateral findings),
    severity in [0, 1] (size/extent), the seed of its geometry (reused for the same
    finding on a follow-up study, so it stays in place) and its contrast (its attenuation
    is multiplied by it: < 1 for a site's faint findings; cardiomegaly ignores it)."""

    ftype: str
    zones: tuple[str, ...]
    severity: float
    geom_seed: int
    contrast: float = 1.0


@dataclass(frozen=True, slots=True)
class StudySpec:
    """Everything needed to render one image deterministically. ``magnification`` and
    ``shift`` (fractions of width, height) move the body on top of the drawn pose;
    ``contrast`` multiplies the drawn display gamma (a site's acquisition)."""

    width: int
    height: int
    anatomy_seed: int  # per patient
    study_seed: int  # pose, texture, noise, intensity window
    inverted: bool
    findings: tuple[FindingSpec, ...] = ()
    magnification: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    contrast: float = 1.0


@dataclass(frozen=True, slots=True)
class RenderedStudy:
    """``pixels``: uint16 ``(height, width)``; ``boxes[i]``: pixel boxes of ``findings[i]``
    (one per drawn side whose footprint is inside the image)."""

    pixels: np.ndarray
    boxes: tuple[tuple[PixelBox, ...], ...]


def _radius_frac(ftype: str, severity: float) -> float:
    return {
        "nodule": 0.009 + 0.014 * severity,
        "mass": 0.045 + 0.03 * severity,
        "calcified granuloma": 0.005 + 0.004 * severity,
    }[ftype]


def size_cm(ftype: str, severity: float) -> float | None:
    """Diameter in cm quoted by sentences for round lesions (None for other types)."""
    if ftype not in ("nodule", "mass", "calcified granuloma"):
        return None
    return round(2.0 * _radius_frac(ftype, severity) * _THORAX_CM, 1)


# ----------------------------------------------------------------------------- drawing
@dataclass(slots=True)
class _Ctx:
    anat: Anatomy
    pose: Pose
    u: np.ndarray
    v: np.ndarray
    layers: AnatomyLayers
    margin: float

    def win(self, rect: tuple[float, float, float, float]) -> tuple[slice, slice]:
        return window(self.pose, self.anat.width, self.anat.height, rect, self.margin)


_Part = tuple[tuple[slice, slice], np.ndarray, np.ndarray]  # window, delta, footprint


def _side(zone: str) -> int:
    return LEFT if zone.startswith("left") or zone == "lingula" else RIGHT


def _ramp(x: np.ndarray, edge: float) -> np.ndarray:
    return np.clip(x * (1.0 / edge) + 0.5, 0.0, 1.0)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    g = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return g / (float(g.std()) + 1e-6)


def _round_lesion(ctx: _Ctx, f: FindingSpec, zone: str, rng: np.random.Generator) -> _Part:
    w = ctx.anat.width
    r = max(2.0, _radius_frac(f.ftype, f.severity) * w)
    x, y = sample_point_in_zone(ctx.anat, zone, rng, clearance=r + 3.0)
    wn = ctx.win((x - 1.4 * r, y - 1.4 * r, x + 1.4 * r, y + 1.4 * r))
    du, dv = ctx.u[wn] - x, ctx.v[wn] - y
    dist = np.sqrt(du * du + dv * dv)
    if f.ftype == "mass":  # lobulated outline
        theta = np.arctan2(dv, du)
        rr = np.full_like(dist, r)
        for k in range(2, 6):
            rr += r * rng.uniform(0.02, 0.08) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
        r_edge, amp, edge = rr, rng.uniform(0.16, 0.24), 2.0
    elif f.ftype == "nodule":
        r_edge, amp, edge = r, rng.uniform(0.11, 0.17), 1.2
    else:  # calcified granuloma: small, very dense, sharp
        r_edge, amp, edge = r, rng.uniform(0.30, 0.40), 0.8
    dome = np.sqrt(np.clip(1.0 - (dist / r_edge) ** 2, 0.0, 1.0))
    fp = _ramp(r_edge - dist, edge)
    return wn, amp * fp * (0.6 + 0.4 * dome), fp


def _consolidation(ctx: _Ctx, f: FindingSpec, zone: str, rng: np.random.Generator) -> _Part:
    a = ctx.anat
    x, y = sample_point_in_zone(a, zone, rng, min_lung=0.9)
    rx, ry = (0.045 + 0.04 * f.severity) * a.width, (0.05 + 0.045 * f.severity) * a.height
    wn = ctx.win((x - 1.3 * rx, y - 1.3 * ry, x + 1.3 * rx, y + 1.3 * ry))
    du, dv = (ctx.u[wn] - x) / rx, (ctx.v[wn] - y) / ry
    theta = np.arctan2(dv, du)
    rr = (
        1.0
        + 0.12 * np.cos(2 * theta + rng.uniform(0, 6.3))
        + 0.08 * np.cos(3 * theta + rng.uniform(0, 6.3))
    )
    env = (
        _ramp((rr - np.sqrt(du * du + dv * dv)) * min(rx, ry), 5.0)
        * ctx.layers.lungs[_side(zone)][wn]
    )
    patch = 0.65 + 0.35 * np.tanh(_smooth_noise(rng, env.shape, max(1.5, 0.006 * a.width)))
    return wn, rng.uniform(0.13, 0.2) * env * patch, env


def _interstitial(ctx: _Ctx, f: FindingSpec, zone: str, rng: np.random.Generator) -> _Part:
    a = ctx.anat
    x, y = sample_point_in_zone(a, zone, rng, min_lung=0.9)
    rx, ry = (0.08 + 0.04 * f.severity) * a.width, (0.09 + 0.05 * f.severity) * a.height
    wn = ctx.win((x - rx, y - ry, x + rx, y + ry))
    du, dv = (ctx.u[wn] - x) / rx, (ctx.v[wn] - y) / ry
    env = (
        _ramp((1.0 - np.sqrt(du * du + dv * dv)) * min(rx, ry), 8.0)
        * ctx.layers.lungs[_side(zone)][wn]
    )
    g = _smooth_noise(rng, env.shape, max(0.8, 0.0025 * a.width))
    net = np.exp(-((g / 0.35) ** 2))  # bright lines along the zero crossings: a reticular net
    return wn, rng.uniform(0.08, 0.12) * env * (0.3 + 0.7 * net), env


def _atelectasis(ctx: _Ctx, f: FindingSpec, zone: str, rng: np.random.Generator) -> _Part:
    a = ctx.anat
    length = (0.07 + 0.07 * f.severity) * a.width
    thick = max(2.5, (0.010 + 0.010 * f.severity) * a.width)
    x, y = sample_point_in_zone(a, zone, rng, min_lung=0.9, clearance=0.3 * length)
    ang = math.radians(rng.uniform(-22.0, 22.0))
    wn = ctx.win((x - length, y - length, x + length, y + length))
    du, dv = ctx.u[wn] - x, ctx.v[wn] - y
    s = (du * math.cos(ang) + dv * math.sin(ang)) / (0.5 * length)  # -1..1 along the band
    p = np.abs(-du * math.sin(ang) + dv * math.cos(ang))
    if rng.random() < 0.35:  # wedge: wide at one end, pointed at the other
        half = thick * (0.2 + 0.9 * np.clip(0.5 - 0.5 * s, 0.0, 1.0))
    else:  # plate-like line with tapered ends
        half = 0.5 * thick * np.sqrt(np.clip(1.0 - s * s, 0.0, 1.0))
    fp = _ramp(half - p, 1.2) * (np.abs(s) < 1.0) * ctx.layers.lungs[_side(zone)][wn]
    return wn, rng.uniform(0.15, 0.22) * fp, fp


def _effusion(ctx: _Ctx, f: FindingSpec, zone: str, rng: np.random.Generator) -> _Part:
    a, side = ctx.anat, _side(zone)
    x0, y0, x1, y1 = lung_rect(a, side)
    lh = y1 - y0
    level = y1 - (0.12 + 0.25 * f.severity + rng.uniform(-0.02, 0.02)) * lh
    wn = ctx.win((x0, level - 0.05 * lh, x1, y1))
    lateral = (ctx.u[wn] - x0) / (x1 - x0)  # 0 at the image-left wall
    if side == RIGHT:
        lateral = 1.0 - lateral  # 1 at the lateral wall (meniscus climbs there)
    top = level + 0.12 * lh * (1.0 - np.clip(lateral, 0.0, 1.0)) ** 2
    fp = _ramp(ctx.v[wn] - top, 0.02 * a.height) * ctx.layers.lungs[side][wn]
    return wn, 0.85 * a.lung_dark * fp, fp


def _pneumothorax(ctx: _Ctx, f: FindingSpec, zone: str, rng: np.random.Generator) -> _Part:
    a, side = ctx.anat, _side(zone)
    x0, y0, x1, _ = lung_rect(a, side)
    lh = a.lung_height(side) * a.height
    gap = (0.025 + 0.04 * f.severity + rng.uniform(0.0, 0.01)) * a.width
    vlim = y0 + (0.35 + 0.3 * f.severity) * lh
    wn = ctx.win((x0, y0, x1, vlim))
    uu, vv = ctx.u[wn], ctx.v[wn]
    shrink = gap * np.sqrt(np.clip((vlim - vv) / (vlim - y0), 0.0, 1.0))
    outer = lung_mask(a, side, uu, vv)
    inner = lung_mask(a, side, uu, vv, shrink=shrink)
    region = np.clip(outer - inner, 0.0, 1.0)
    line = 4.0 * inner * (1.0 - inner) * outer * (shrink > 1.0)  # the visceral pleural line
    delta = -(0.07 + ctx.layers.markings[wn]) * region  # more lucent, and no lung markings
    return wn, delta + 0.11 * line, np.maximum(region, line)


def _hilar(ctx: _Ctx, f: FindingSpec, zone: str, rng: np.random.Generator) -> _Part:
    a, side = ctx.anat, _side(zone)
    hx, hy = a.hilum[side][0] * a.width, a.hilum[side][1] * a.height
    lat = -1.0 if side == RIGHT else 1.0
    sig = (0.017 + 0.012 * f.severity) * a.width
    wn = ctx.win((hx - 5 * sig, hy - 5 * sig, hx + 5 * sig, hy + 5 * sig))
    delta = np.zeros(ctx.u[wn].shape, np.float32)
    for _ in range(int(rng.integers(2, 4))):
        cx = hx + lat * rng.uniform(0.0, 0.025) * a.width
        cy = hy + rng.uniform(-0.03, 0.03) * a.height
        du, dv = (ctx.u[wn] - cx) / sig, (ctx.v[wn] - cy) / sig
        delta += rng.uniform(0.08, 0.12) * np.exp(-0.5 * (du * du + dv * dv))
    return wn, delta, delta


_DRAWERS = {
    "nodule": _round_lesion,
    "mass": _round_lesion,
    "calcified granuloma": _round_lesion,
    "consolidation": _consolidation,
    "interstitial pattern": _interstitial,
    "atelectasis": _atelectasis,
    "pleural effusion": _effusion,
    "pneumothorax": _pneumothorax,
    "hilar enlargement": _hilar,
}


def _enlarge_heart(anat: Anatomy, severity: float) -> Anatomy:
    return replace(
        anat,
        heart_rx=anat.heart_rx * (1.22 + 0.2 * severity),
        heart_ry=anat.heart_ry * (1.08 + 0.1 * severity),
        heart_xc=anat.heart_xc + 0.015,
    )


def _footprint_box(fp: np.ndarray, wn: tuple[slice, slice], sigma: float) -> PixelBox | None:
    if fp.size == 0:
        return None
    blurred = ndimage.gaussian_filter(fp.astype(np.float32, copy=False), sigma, mode="constant")
    peak = float(blurred.max())
    if peak <= 1e-3:
        return None
    mask = blurred > 0.15 * peak
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    r0, c0 = wn[0].start, wn[1].start
    return (c0 + int(cols[0]), r0 + int(rows[0]), c0 + int(cols[-1]) + 1, r0 + int(rows[-1]) + 1)


def render_study(spec: StudySpec, with_findings: bool = True) -> RenderedStudy:
    """Render one study to a uint16 ``(height, width)`` image and box its findings.

    ``with_findings=False`` renders the same patient, pose, texture and noise without any
    finding (the random streams of the anatomy and of each finding are independent), so
    the difference of the two images is exactly the findings' contribution.
    """
    w, h = spec.width, spec.height
    rng = np.random.default_rng(spec.study_seed)
    anat = sample_anatomy(np.random.default_rng(spec.anatomy_seed), w, h)
    pose = sample_pose(rng, w, h)
    if spec.magnification != 1.0 or spec.shift != (0.0, 0.0):
        pose = replace(
            pose,
            scale=pose.scale * spec.magnification,
            shift_x=pose.shift_x + spec.shift[0] * w,
            shift_y=pose.shift_y + spec.shift[1] * h,
        )
    findings = spec.findings if with_findings else ()
    for f in findings:
        if f.ftype == "cardiomegaly":
            anat = _enlarge_heart(anat, f.severity)
    u, v = canonical_grid(w, h, pose)
    layers = render_anatomy(anat, pose, u, v, rng)
    sigma = float(rng.uniform(0.7, 1.3)) * max(w, h) / 512.0
    noise_sd, gamma = float(rng.uniform(0.004, 0.012)), float(rng.uniform(0.8, 1.25))
    span = int(
        rng.choice(
            [4095, int(rng.integers(1500, 4096)), int(rng.integers(4096, 16001))], p=[0.6, 0.2, 0.2]
        )
    )
    offset = 0 if rng.random() < 0.3 else int(rng.integers(0, 65536 - span))
    noise = rng.standard_normal((h, w), dtype=np.float32)

    ctx = _Ctx(anat, pose, u, v, layers, margin=3.0 * sigma + 3.0)
    boxes: list[tuple[PixelBox, ...]] = []
    for f in findings:
        frng = np.random.default_rng(f.geom_seed)
        found: list[PixelBox] = []
        for zone in f.zones:
            if f.ftype == "cardiomegaly":  # drawn by the anatomy; boxed as the whole silhouette
                wn = ctx.win(heart_rect(anat))
                fp = heart_mask(anat, u[wn], v[wn])
            else:
                wn, delta, fp = _DRAWERS[f.ftype](ctx, f, zone, frng)
                layers.atten[wn] += delta if f.contrast == 1.0 else f.contrast * delta
            box = _footprint_box(fp, wn, sigma)
            if box is not None:
                found.append(box)
        boxes.append(tuple(found))

    atten = ndimage.gaussian_filter(layers.atten, sigma)
    atten += noise_sd * noise
    idx = (np.clip(atten, 0.0, 1.0) * 4095.0 + 0.5).astype(np.uint16)
    lut = np.linspace(0.0, 1.0, 4096) ** (gamma * spec.contrast if spec.contrast != 1.0 else gamma)
    if spec.inverted:
        lut = 1.0 - lut
    lut16 = np.round(offset + span * lut).astype(np.uint16)
    return RenderedStudy(pixels=lut16[idx], boxes=tuple(boxes))
