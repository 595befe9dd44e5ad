"""Render and write a phantom data set in the exact PadChest-GR release layout.

Layout written under ``out_dir``::

    grounded_reports_<date>.json            list of study records (StudyID, ImageID, ...)
    master_table.csv                        one row per (study, positive label) + Normal rows
    Padchest_GR_files/PadChest_GR/<ImageID> 16-bit greyscale PNGs
    ricl_site.json                          the site style and which findings it made
                                            faint or location-free (not part of PadChest-GR)

Determinism: the whole release is a function of ``(n_studies, seed, sizes, site)``. Planning
(:func:`~ricl.data.phantom.plan.plan_release`) uses one generator; every image is rendered
from its own seeds (see :class:`~ricl.data.phantom.findings.StudySpec`), so rendering order
and worker processes do not change a byte.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ricl.data.padchest_gr import DEFAULT_IMAGES_SUBDIR, MASTER_TABLE_COLUMNS
from ricl.data.phantom.findings import PixelBox, StudySpec, render_study
from ricl.data.phantom.plan import DEFAULT_SIZES, PlannedStudy, plan_release
from ricl.data.phantom.sites import SITE_SIDECAR, SiteStyle, annotate_boxes, get_site
from ricl.data.phantom.vocab import LABEL_GROUPS

__all__ = [
    "CSV_COLUMNS",
    "IMAGES_SUBDIR",
    "PhantomSummary",
    "write_phantom_release",
]

IMAGES_SUBDIR = DEFAULT_IMAGES_SUBDIR  # the release layout the reader expects
CSV_COLUMNS = MASTER_TABLE_COLUMNS


@dataclass(frozen=True, slots=True)
class PhantomSummary:
    """What :func:`write_phantom_release` wrote. ``n_findings`` counts positive findings,
    ``n_boxes`` their primary boxes; ``seconds`` is the wall time; ``site`` the site's name
    and ``site_path`` its sidecar (``ricl_site.json``)."""

    out_dir: Path
    json_path: Path
    csv_path: Path
    images_dir: Path
    n_studies: int
    n_patients: int
    n_findings: int
    n_boxes: int
    seconds: float
    site: str = "default"
    site_path: Path | None = None


def _render_to_png(job: tuple[StudySpec, str]) -> tuple[tuple[PixelBox, ...], ...]:
    spec, path = job
    out = render_study(spec)
    Image.fromarray(out.pixels).save(path, format="PNG", compress_level=1)
    return out.boxes


def _norm(box: PixelBox, w: int, h: int) -> list[float]:
    x0, y0, x1, y1 = box
    n = [round(x0 / w, 6), round(y0 / h, 6), round(x1 / w, 6), round(y1 / h, 6)]
    if not (0.0 <= n[0] < n[2] <= 1.0 and 0.0 <= n[1] < n[3] <= 1.0):
        raise ValueError(f"box {box} does not fit a {w}x{h} image")
    return n


def _jitter(rng: np.random.Generator, box: PixelBox, w: int, h: int) -> PixelBox:
    """A second reader's version of a box: each edge moved by up to ~6 % of the box size."""
    x0, y0, x1, y1 = box
    lim = np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0]) * 0.06
    lim = np.maximum(1, np.round(lim)).astype(np.int64)
    a, b, c, d = (int(v) for v in rng.integers(-lim, lim + 1))
    nx0, ny0 = min(max(0, x0 + a), w - 1), min(max(0, y0 + b), h - 1)
    return nx0, ny0, min(w, max(nx0 + 1, x1 + c)), min(h, max(ny0 + 1, y1 + d))


def _assemble(
    s: PlannedStudy, boxes: tuple[tuple[PixelBox, ...], ...], style: SiteStyle
) -> tuple[dict, list[dict]]:
    """The JSON record and the master-table rows of one rendered study, annotated in the
    site's style."""
    w, h = s.render.width, s.render.height
    rng = np.random.default_rng(s.extra_seed)
    site_rng = np.random.default_rng([s.extra_seed, 1]) if style.box_margin_jitter else None
    common = {
        "StudyID": s.study_id,
        "ImageID": s.image_id,
        "prior_study": str(s.previous_study_id is not None),
        "prior_imageID": s.previous_image_id or "",
        "study_is_benchmark": str(s.split == "test"),
        "study_is_validation": str(s.split == "validation"),
        "split": s.split,
        "PatientID": s.patient_id,
        "patient_is_benchmark": str(s.split == "test"),
        "PatientBirth": s.birth_year,
        "PatientSex_DICOM": s.sex,
        "StudyDate_DICOM": s.date.strftime("%Y%m%d"),
        "StudyDate": s.date.strftime("%Y%m%d"),
        "PatientAge": s.date.year - s.birth_year,
        "Year": s.date.year,
    }
    findings: list[dict] = []
    rows: list[dict] = []
    for f in s.findings:
        if not f.abnormal:
            findings.append(
                {"sentence_en": f.sentence_en, "sentence_es": f.sentence_es, "abnormal": False}
            )
            continue
        px = boxes[f.render_index] if f.grounded else ()  # type: ignore[index]
        px = annotate_boxes(px, style, w, h, site_rng, bilateral="bilateral" in f.locations)
        extra = [_jitter(rng, b, w, h) for b in px] if f.second_reader else []
        findings.append(
            {
                "sentence_en": f.sentence_en,
                "sentence_es": f.sentence_es,
                "abnormal": True,
                "boxes": [_norm(b, w, h) for b in px],
                "extra_boxes": [_norm(b, w, h) for b in extra],
                "labels": list(f.labels),
                "locations": list(f.locations),
                "progression": f.progression,
            }
        )
        for label in f.labels:
            rows.append(
                {
                    **common,
                    "label": label,
                    "boxes_count": len(px),
                    "extra_boxes_count": len(extra),
                    "locations": str(list(f.locations)),
                    "progression_status": f.progression or "",
                    "sentence_en": f.sentence_en,
                    "sentence_es": f.sentence_es,
                    "label_group": LABEL_GROUPS[label],
                }
            )
    if s.is_normal:
        lead = s.findings[0]
        rows.append(
            {
                **common,
                "label": "Normal",
                "boxes_count": 0,
                "extra_boxes_count": 0,
                "locations": "[]",
                "progression_status": "",
                "sentence_en": lead.sentence_en,
                "sentence_es": lead.sentence_es,
                "label_group": LABEL_GROUPS["Normal"],
            }
        )
    record = {
        "StudyID": s.study_id,
        "ImageID": s.image_id,
        "PreviousStudyID": s.previous_study_id,
        "PreviousImageID": s.previous_image_id,
        "findings": findings,
    }
    return record, rows


def _site_record(style: SiteStyle, plan: list[PlannedStudy], seed: int, sizes: list[int]) -> dict:
    """The sidecar: the style's parameters and, per image, the indexes (into the record's
    ``findings``) of the positive findings drawn faint and of the sentences naming the type
    only (both empty for the default site)."""
    marks: dict[str, dict[str, list[int]]] = {}
    for s in plan:
        faint = [
            i
            for i, f in enumerate(s.findings)
            if f.abnormal and s.render.findings[f.render_index].contrast < 1.0  # type: ignore[index]
        ]
        unlocated = [i for i, f in enumerate(s.findings) if f.abnormal and not f.located]
        if faint or unlocated:
            marks[s.image_id] = {"faint": faint, "no_location": unlocated}
    return {
        "format": "ricl-phantom-site/1",
        "site": style.to_dict(),
        "seed": seed,
        "n_studies": len(plan),
        "sizes": sizes,
        "findings": marks,
    }


def write_phantom_release(
    out_dir: str | Path,
    n_studies: int,
    seed: int,
    sizes: int | Sequence[int] = DEFAULT_SIZES,
    date: str = "20240819",
    *,
    size: int | None = None,
    workers: int = 1,
    site: str | SiteStyle = "default",
) -> PhantomSummary:
    """Write a phantom PadChest-GR release of ``n_studies`` studies under ``out_dir``.

    ``sizes``: long side(s) in px, one drawn per study (``size`` is a shorthand for a single
    long side); ``date``: suffix of ``grounded_reports_<date>.json``; ``workers > 1``
    renders images in that many processes (same bytes as ``workers=1``); ``site``: a site
    name of :data:`~ricl.data.phantom.sites.SITES` or a
    :class:`~ricl.data.phantom.sites.SiteStyle` (the ``default`` site writes the historic
    release, byte for byte), recorded in ``ricl_site.json``.
    """
    t0 = time.perf_counter()
    style = get_site(site)
    sizes = (size,) if size is not None else sizes
    plan = plan_release(n_studies, seed, sizes, style)
    out = Path(out_dir)
    images_dir = out / IMAGES_SUBDIR
    images_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(s.render, str(images_dir / s.image_id)) for s in plan]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            all_boxes = list(ex.map(_render_to_png, jobs, chunksize=8))
    else:
        all_boxes = [_render_to_png(j) for j in jobs]

    records, rows = [], []
    for s, boxes in zip(plan, all_boxes, strict=True):
        record, study_rows = _assemble(s, boxes, style)
        records.append(record)
        rows.extend(study_rows)
    positives = [f for r in records for f in r["findings"] if f["abnormal"]]

    json_path = out / f"grounded_reports_{date}.json"
    with open(json_path, "w", encoding="utf-8") as fh:
        fh.write("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n")
    csv_path = out / "master_table.csv"
    with open(csv_path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    site_path = out / SITE_SIDECAR
    size_list = [int(sizes)] if isinstance(sizes, (int, np.integer)) else [int(x) for x in sizes]
    with open(site_path, "w", encoding="utf-8") as fh:
        json.dump(_site_record(style, plan, seed, size_list), fh, ensure_ascii=False, indent=1)
        fh.write("\n")
    return PhantomSummary(
        out,
        json_path,
        csv_path,
        images_dir,
        len(plan),
        len({s.patient_id for s in plan}),
        len(positives),
        sum(len(f["boxes"]) for f in positives),
        time.perf_counter() - t0,
        style.name,
        site_path,
    )
