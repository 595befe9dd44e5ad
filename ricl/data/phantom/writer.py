"""Plan and write a phantom data set in the exact PadChest-GR release layout.

Layout written under ``out_dir``::

    grounded_reports_<date>.json            list of study records (StudyID, ImageID, ...)
    master_table.csv                        one row per (study, positive label) + Normal rows
    Padchest_GR_files/PadChest_GR/<ImageID> 16-bit greyscale PNGs

Determinism: the whole release is a function of ``(n_studies, seed, sizes)``. Planning uses
one generator; every image is rendered from its own seeds (see
:class:`~ricl.data.phantom.findings.StudySpec`), so rendering order and worker processes do
not change a byte.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ricl.data.phantom.findings import (
    BILATERAL_ZONES,
    FINDING_TYPES,
    LABEL_GROUPS,
    SECONDARY_LABELS,
    TYPE_WEIGHTS,
    TYPE_ZONES,
    FindingSpec,
    PixelBox,
    StudySpec,
    render_study,
    size_cm,
)
from ricl.data.phantom.sentences import negative_sentences, normal_sentences, positive_sentence

__all__ = [
    "ASPECTS",
    "CSV_COLUMNS",
    "DEFAULT_SIZES",
    "IMAGES_SUBDIR",
    "PhantomSummary",
    "PlannedFinding",
    "PlannedStudy",
    "plan_release",
    "write_phantom_release",
]

DEFAULT_SIZES: tuple[int, ...] = (480, 512, 544)  # long side, px
ASPECTS: tuple[float, ...] = (1.0, 0.9, 1.1, 0.8)  # width / height
IMAGES_SUBDIR = Path("Padchest_GR_files") / "PadChest_GR"
CSV_COLUMNS: tuple[str, ...] = (
    "StudyID",
    "ImageID",
    "label",
    "boxes_count",
    "extra_boxes_count",
    "locations",
    "prior_study",
    "progression_status",
    "prior_imageID",
    "sentence_en",
    "sentence_es",
    "study_is_benchmark",
    "study_is_validation",
    "split",
    "PatientID",
    "patient_is_benchmark",
    "PatientBirth",
    "PatientSex_DICOM",
    "StudyDate_DICOM",
    "StudyDate",
    "PatientAge",
    "label_group",
    "Year",
)
P_NORMAL, P_INVERTED, P_UNGROUNDED, P_SECOND_READER, P_CARRY = 0.25, 0.03, 0.03, 0.2, 0.6


@dataclass(frozen=True, slots=True)
class PhantomSummary:
    """What :func:`write_phantom_release` wrote. ``n_findings`` counts positive findings,
    ``n_boxes`` their primary boxes; ``seconds`` is the wall time."""

    out_dir: Path
    json_path: Path
    csv_path: Path
    images_dir: Path
    n_studies: int
    n_patients: int
    n_findings: int
    n_boxes: int
    seconds: float


@dataclass(frozen=True, slots=True)
class PlannedFinding:
    """One report sentence. Positive ones point at ``StudySpec.findings[render_index]``."""

    sentence_en: str
    sentence_es: str
    abnormal: bool
    render_index: int | None = None
    labels: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()
    progression: str | None = None
    grounded: bool = True
    second_reader: bool = False


@dataclass(frozen=True, slots=True)
class PlannedStudy:
    """One study of the plan; ``render`` is its image, ``findings`` its report."""

    study_id: str
    image_id: str
    patient_id: str
    sex: str
    birth_year: int
    split: str
    date: dt.date
    previous_study_id: str | None
    previous_image_id: str | None
    render: StudySpec
    findings: tuple[PlannedFinding, ...]
    extra_seed: int

    @property
    def is_normal(self) -> bool:
        return not any(f.abnormal for f in self.findings)


def _digits(rng: np.random.Generator, n: int, used: set[str]) -> str:
    while True:
        s = str(int(rng.integers(1, 10))) + "".join(map(str, rng.integers(0, 10, n - 1)))
        if s not in used:
            used.add(s)
            return s


def _new_finding(rng: np.random.Generator, taken: Sequence[FindingSpec]) -> FindingSpec | None:
    """A random finding whose type+zone does not repeat (or overlap) one already taken."""
    p = np.array([TYPE_WEIGHTS[t] for t in FINDING_TYPES])
    for _ in range(30):
        ftype = FINDING_TYPES[int(rng.choice(len(FINDING_TYPES), p=p / p.sum()))]
        bil = BILATERAL_ZONES.get(ftype)
        zones = (
            bil[0]
            if bil and rng.random() < bil[1]
            else (TYPE_ZONES[ftype][int(rng.integers(len(TYPE_ZONES[ftype])))],)
        )
        if any(t.ftype == ftype and set(t.zones) & set(zones) for t in taken):
            continue
        return FindingSpec(ftype, zones, float(rng.uniform(0.15, 1.0)), int(rng.integers(2**62)))
    return None


def _positive(
    rng: np.random.Generator,
    spec: FindingSpec,
    index: int,
    labels: tuple[str, ...] | None,
    progression: str | None,
) -> PlannedFinding:
    if labels is None:
        second = SECONDARY_LABELS.get(spec.ftype)
        labels = (spec.ftype, second[0]) if second and rng.random() < second[1] else (spec.ftype,)
    en, es = positive_sentence(
        spec.ftype,
        labels,
        spec.zones,
        spec.severity,
        size_cm(spec.ftype, spec.severity),
        progression,
        rng,
    )
    grounded = bool(rng.random() >= P_UNGROUNDED)
    locations = spec.zones if len(spec.zones) == 1 else ("bilateral", *spec.zones)
    return PlannedFinding(
        en,
        es,
        True,
        index,
        labels,
        locations,
        progression,
        grounded,
        grounded and bool(rng.random() < P_SECOND_READER),
    )


def _plan_report(
    rng: np.random.Generator, prior: tuple[StudySpec, tuple[PlannedFinding, ...]] | None
) -> tuple[tuple[FindingSpec, ...], tuple[PlannedFinding, ...]]:
    specs: list[FindingSpec] = []
    positives: list[PlannedFinding] = []
    prior_pos = [f for f in prior[1] if f.abnormal] if prior else []
    if prior_pos and rng.random() < P_CARRY:  # the same finding again, with its progression
        old = prior_pos[int(rng.integers(len(prior_pos)))]
        o = prior[0].findings[old.render_index]  # type: ignore[index,union-attr]
        prog = ("stable", "improved", "worsened")[int(rng.choice(3, p=[0.5, 0.25, 0.25]))]
        sev = {
            "stable": o.severity,
            "improved": o.severity * rng.uniform(0.5, 0.8),
            "worsened": min(1.0, o.severity * rng.uniform(1.2, 1.6) + 0.05),
        }[prog]
        specs.append(FindingSpec(o.ftype, o.zones, float(sev), o.geom_seed))
        positives.append(_positive(rng, specs[-1], 0, old.labels, prog))
    elif rng.random() < P_NORMAL:
        return (), tuple(PlannedFinding(en, es, False) for en, es in normal_sentences(rng))
    n_pos = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
    while len(specs) < n_pos:
        spec = _new_finding(rng, specs)
        if spec is None:
            break
        specs.append(spec)
        positives.append(_positive(rng, spec, len(specs) - 1, None, None))
    present = {s.ftype for s in specs}
    negatives = [
        PlannedFinding(en, es, False)
        for en, es in negative_sentences(present, int(rng.integers(0, 3)), rng)
    ]
    report = positives + negatives
    order = rng.permutation(len(report))
    return tuple(specs), tuple(report[int(i)] for i in order)


def _split_patients(rng: np.random.Generator, n: int) -> list[str]:
    n_test, n_val = round(0.2 * n), round(0.1 * n)
    if n >= 3:
        n_test, n_val = max(1, n_test), max(1, n_val)
    splits = ["test"] * n_test + ["validation"] * n_val + ["train"] * (n - n_test - n_val)
    return [splits[int(i)] for i in np.argsort(rng.permutation(n))]


def plan_release(
    n_studies: int, seed: int, sizes: int | Sequence[int] = DEFAULT_SIZES
) -> list[PlannedStudy]:
    """Plan every study (ids, patients, dates, report, render spec), in release order."""
    if n_studies < 0:
        raise ValueError(f"n_studies must be >= 0, got {n_studies}")
    sizes = (int(sizes),) if isinstance(sizes, (int, np.integer)) else tuple(int(x) for x in sizes)
    if not sizes or min(sizes) < 64:
        raise ValueError(f"sizes must be long sides of at least 64 px, got {sizes!r}")
    rng = np.random.default_rng(seed)
    per_patient: list[int] = []
    while sum(per_patient) < n_studies:
        k = 1 if rng.random() < 0.8 else int(rng.choice([2, 3], p=[0.7, 0.3]))
        per_patient.append(min(k, n_studies - sum(per_patient)))
    splits = _split_patients(rng, len(per_patient))
    used: set[str] = set()
    studies: list[PlannedStudy] = []
    for p, k in enumerate(per_patient):
        patient_id, anatomy_seed = _digits(rng, 16, used), int(rng.integers(2**62))
        sex = "M" if rng.random() < 0.5 else "F"
        date = dt.date(2009, 1, 1) + dt.timedelta(days=int(rng.integers(0, 3100)))
        birth = date.year - int(rng.integers(18, 96))
        prior: PlannedStudy | None = None
        for _ in range(k):
            long = int(sizes[int(rng.integers(len(sizes)))])
            aspect = ASPECTS[int(rng.integers(len(ASPECTS)))]
            wh = (long, round(long / aspect)) if aspect >= 1.0 else (round(long * aspect), long)
            specs, report = _plan_report(rng, (prior.render, prior.findings) if prior else None)
            render = StudySpec(
                wh[0],
                wh[1],
                anatomy_seed,
                int(rng.integers(2**62)),
                bool(rng.random() < P_INVERTED),
                specs,
            )
            study_id = _digits(rng, 32, used)
            image_id = f"{_digits(rng, 30, used)}_{_digits(rng, 6, used)}.png"
            prior = PlannedStudy(
                study_id,
                image_id,
                patient_id,
                sex,
                birth,
                splits[p],
                date,
                prior.study_id if prior else None,
                prior.image_id if prior else None,
                render,
                report,
                int(rng.integers(2**62)),
            )
            studies.append(prior)
            date += dt.timedelta(days=int(rng.integers(20, 500)))
    return [studies[int(i)] for i in rng.permutation(len(studies))]


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


def _assemble(s: PlannedStudy, boxes: tuple[tuple[PixelBox, ...], ...]) -> tuple[dict, list[dict]]:
    """The JSON record and the master-table rows of one rendered study."""
    w, h = s.render.width, s.render.height
    rng = np.random.default_rng(s.extra_seed)
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


def write_phantom_release(
    out_dir: str | Path,
    n_studies: int,
    seed: int,
    sizes: int | Sequence[int] = DEFAULT_SIZES,
    date: str = "20240819",
    *,
    size: int | None = None,
    workers: int = 1,
) -> PhantomSummary:
    """Write a phantom PadChest-GR release of ``n_studies`` studies under ``out_dir``.

    ``sizes``: long side(s) in px, one drawn per study (``size`` is a shorthand for a single
    long side); ``date``: suffix of ``grounded_reports_<date>.json``; ``workers > 1``
    renders images in that many processes (same bytes as ``workers=1``).
    """
    t0 = time.perf_counter()
    plan = plan_release(n_studies, seed, (size,) if size is not None else sizes)
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
        record, study_rows = _assemble(s, boxes)
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
    )
