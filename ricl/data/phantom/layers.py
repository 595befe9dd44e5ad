"""Drawing of the synthetic anatomy: body, lungs, heart, mediastinum, hila, spine, ribs
and clavicles, rendered as attenuation layers on the output pixel grid.

The geometry (anatomy parameters, pose, masks and zones) lives in
:mod:`~ricl.data.phantom.anatomy`. All layers are ``float32`` of shape ``(rows, cols)``;
attenuation is in arbitrary units where air is about 0, soft tissue about 0.5 and bone
adds about 0.1 (brighter = denser).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from ricl.data.phantom.anatomy import (
    LEFT,
    RIGHT,
    Anatomy,
    Pair,
    Pose,
    _ramp,
    heart_mask,
    heart_rect,
    lung_mask,
    lung_rect,
    window,
)

__all__ = ["AnatomyLayers", "render_anatomy"]


@dataclass(slots=True)
class AnatomyLayers:
    """Full-size ``(height, width)`` float32 layers of a rendered anatomy.

    ``atten``: total attenuation; ``lungs``: per-side lung masks (heart removed);
    ``markings``: the vascular-marking attenuation inside the lungs (so that a finding,
    e.g. a pneumothorax, can remove it)."""

    atten: np.ndarray
    lungs: tuple[np.ndarray, np.ndarray]
    markings: np.ndarray


def _body(anat: Anatomy, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Soft tissue: the neck widening into the thorax, denser in the middle; air ~0.03."""
    w, h = anat.width, anat.height
    d = np.abs(u - 0.5 * w) * (1.0 / w)
    t = np.clip(v * (1.0 / (anat.shoulder_y * h)), 0.0, 1.0)
    half = anat.neck_half + (anat.body_half - anat.neck_half) * (t * t * (3.0 - 2.0 * t))
    body = np.clip((half - d) * (1.0 / 0.015), 0.0, 1.0)
    rel = np.clip(d / half, 0.0, 1.0)
    return 0.03 + anat.tissue * body * (1.0 - 0.3 * rel * rel)


def _ribs(anat: Anatomy, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Posterior rib arcs (curving down laterally) and fainter anterior arcs."""
    w, h = anat.width, anat.height
    dn = np.abs(u - 0.5 * w) * (1.0 / (anat.body_half * w))
    sp, ty0 = anat.rib_spacing * h, anat.rib_top * h
    phase = (v - ty0 - sp * (-1.0 * dn + 3.2 * dn * dn)) * (1.0 / sp)
    f = np.abs(phase - np.floor(phase) - 0.5)
    post = np.clip((0.5 * anat.rib_width - f) * (sp / 1.5) + 0.5, 0.0, 1.0)
    post *= (phase > 0) & (phase < 10) & (dn > 0.06) & (dn < 0.97)
    phase = (v - ty0 - 0.06 * h - sp * 2.2 * (1.0 - dn)) * (1.0 / (1.1 * sp))
    f = np.abs(phase - np.floor(phase) - 0.5)
    ant = np.clip((0.2 - f) * (sp / 1.5) + 0.5, 0.0, 1.0)
    ant *= (phase > 0) & (phase < 6) & (dn > 0.3) & (dn < 0.97)
    return anat.rib_amp * (post + 0.4 * ant)


def _segment_band(u: np.ndarray, v: np.ndarray, p: Pair, q: Pair, half: float) -> np.ndarray:
    """Soft band of half width ``half`` px around segment p-q (canonical px)."""
    ax, ay, bx, by = p[0], p[1], q[0], q[1]
    ex, ey = bx - ax, by - ay
    t = np.clip(((u - ax) * ex + (v - ay) * ey) / (ex * ex + ey * ey), 0.0, 1.0)
    dx, dy = u - ax - t * ex, v - ay - t * ey
    return _ramp(half - np.sqrt(dx * dx + dy * dy), 1.5)


def _clavicle(anat: Anatomy, sgn: float) -> tuple[Pair, Pair]:
    mid = 0.5 * anat.width
    return (
        (mid + sgn * 0.05 * anat.width, (anat.lung_top[0] + 0.05) * anat.height),
        (mid + sgn * 0.33 * anat.width, (anat.lung_top[0] - 0.01) * anat.height),
    )


def _clip_rows(
    slices: dict[str, tuple[slice, slice]], r0: int, r1: int, key: str
) -> tuple[slice, slice] | None:
    """The part of window ``slices[key]`` inside output rows ``[r0, r1)``, or None."""
    rs, cs = slices[key]
    a, b = max(rs.start, r0), min(rs.stop, r1)
    return (slice(a, b), cs) if a < b and cs.start < cs.stop else None


def render_anatomy(
    anat: Anatomy,
    pose: Pose,
    u: np.ndarray,
    v: np.ndarray,
    rng: np.random.Generator,
    strip: int = 32,
) -> AnatomyLayers:
    """Draw body, lungs, heart, mediastinum, hila, spine, ribs and clavicles on the output
    grid (``u, v`` from :func:`canonical_grid`, shape ``(H, W)``).

    Work is done in strips of ``strip`` rows, each component only inside its own window:
    the temporaries stay small (cache-resident, no page faults), several times faster
    than whole-image numpy expressions.
    """
    w, h = anat.width, anat.height
    mid = 0.5 * w
    # vascular markings: smooth noise (upsampled bilinearly), brighter towards the hila
    small = ndimage.gaussian_filter(
        rng.standard_normal((h // 5 + 3, w // 5 + 3)).astype(np.float32), 0.9
    )
    field = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR))

    carina = min(anat.hilum[0][1], anat.hilum[1][1]) * h - 0.03 * h
    ty0, ty1 = anat.rib_top * h, (anat.rib_top + 10.5 * anat.rib_spacing) * h
    hil = [(anat.hilum[s][0] * w, anat.hilum[s][1] * h) for s in (RIGHT, LEFT)]
    clav = [_clavicle(anat, -1.0), _clavicle(anat, 1.0)]
    win = {
        "heart": heart_rect(anat),
        "lung0": lung_rect(anat, RIGHT),
        "lung1": lung_rect(anat, LEFT),
        "hil0": (
            hil[0][0] - 0.06 * w,
            hil[0][1] - 0.06 * h,
            hil[0][0] + 0.06 * w,
            hil[0][1] + 0.06 * h,
        ),
        "hil1": (
            hil[1][0] - 0.06 * w,
            hil[1][1] - 0.06 * h,
            hil[1][0] + 0.06 * w,
            hil[1][1] + 0.06 * h,
        ),
        "trachea": (mid - 0.03 * w, 0.0, mid + 0.03 * w, carina),
        "spine": (mid - 0.05 * w, 0.0, mid + 0.05 * w, float(h)),
        "ribs": (mid - anat.body_half * w, ty0 - 0.05 * h, mid + anat.body_half * w, ty1),
    }
    for i, (p, q) in enumerate(clav):
        win[f"clav{i}"] = (
            min(p[0], q[0]) - 0.03 * w,
            q[1] - 0.03 * h,
            max(p[0], q[0]) + 0.03 * w,
            p[1] + 0.03 * h,
        )
    slices = {k: window(pose, w, h, r, 3) for k, r in win.items()}

    atten = np.empty((h, w), np.float32)
    heart = np.zeros((h, w), np.float32)
    markings = np.zeros((h, w), np.float32)
    lungs = (np.zeros((h, w), np.float32), np.zeros((h, w), np.float32))
    for r0 in range(0, h, strip):
        r1 = min(h, r0 + strip)

        atten[r0:r1] = _body(anat, u[r0:r1], v[r0:r1])
        if (b := _clip_rows(slices, r0, r1, "heart")) is not None:
            heart[b] = heart_mask(anat, u[b], v[b])
            atten[b] += 0.04 * heart[b]
        for side in (RIGHT, LEFT):
            if (b := _clip_rows(slices, r0, r1, f"lung{side}")) is not None:
                uu, vv = u[b], v[b]
                m = lung_mask(anat, side, uu, vv) * (1.0 - heart[b])
                r = np.sqrt((uu - hil[side][0]) ** 2 + (vv - hil[side][1]) ** 2) * (1.0 / (0.3 * w))
                mk = 0.16 * np.clip(field[b] - 0.05, 0.0, None) * np.clip(1.1 - r, 0.2, 1.0) * m
                depth = np.clip(
                    (vv - anat.lung_top[side] * h) * (1.0 / (anat.lung_height(side) * h)), 0.0, 1.0
                )
                atten[b] += mk - anat.lung_dark * m * (1.0 - 0.2 * depth)
                markings[b], lungs[side][b] = mk, m
            if (
                b := _clip_rows(slices, r0, r1, f"hil{side}")
            ) is not None:  # normal hilum: a soft vascular blob
                du, dv = (u[b] - hil[side][0]) / (0.025 * w), (v[b] - hil[side][1]) / (0.035 * h)
                atten[b] += 0.07 * np.exp(-0.5 * (du * du + dv * dv))
        if (b := _clip_rows(slices, r0, r1, "trachea")) is not None:
            atten[b] -= (
                0.07 * _ramp(0.011 * w - np.abs(u[b] - mid), 1.5) * _ramp(carina - v[b], 3.0)
            )
        if (b := _clip_rows(slices, r0, r1, "spine")) is not None:
            atten[b] += 0.05 * _ramp(0.035 * w - np.abs(u[b] - mid), 2.0)
        if (b := _clip_rows(slices, r0, r1, "ribs")) is not None:
            atten[b] += _ribs(anat, u[b], v[b])
        for i, (p, q) in enumerate(clav):
            if (b := _clip_rows(slices, r0, r1, f"clav{i}")) is not None:
                atten[b] += anat.clavicle_amp * _segment_band(u[b], v[b], p, q, 0.012 * h)
    return AnatomyLayers(atten=atten, lungs=lungs, markings=markings)
