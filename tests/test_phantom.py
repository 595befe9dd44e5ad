"""Tests of the phantom PadChest-GR release generator (ricl.data.phantom)."""

from __future__ import annotations

import ast
import csv
import json
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ricl.data.phantom import (
    CSV_COLUMNS,
    FINDING_TYPES,
    IMAGES_SUBDIR,
    LABEL_GROUPS,
    LOCATIONS,
    PhantomSummary,
    plan_release,
    render_study,
    write_phantom_release,
)

N, SEED, SIZE = 40, 7, 160
RECORD_KEYS = ["StudyID", "ImageID", "PreviousStudyID", "PreviousImageID", "findings"]
POSITIVE_KEYS = [
    "sentence_en",
    "sentence_es",
    "abnormal",
    "boxes",
    "extra_boxes",
    "labels",
    "locations",
    "progression",
]
NEGATIVE_KEYS = ["sentence_en", "sentence_es", "abnormal"]


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> PhantomSummary:
    return write_phantom_release(tmp_path_factory.mktemp("phantom"), N, seed=SEED, size=SIZE)


@pytest.fixture(scope="module")
def records(release: PhantomSummary) -> list[dict]:
    return json.loads(release.json_path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def rows(release: PhantomSummary) -> list[dict]:
    with open(release.csv_path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def big_plan():
    return plan_release(300, seed=11, sizes=128)


def _positives(rec: dict) -> list[dict]:
    return [f for f in rec["findings"] if f["abnormal"]]


def test_layout_and_summary(release: PhantomSummary, records: list[dict]) -> None:
    assert release.json_path == release.out_dir / "grounded_reports_20240819.json"
    assert release.csv_path == release.out_dir / "master_table.csv"
    assert release.images_dir == release.out_dir / IMAGES_SUBDIR
    assert release.n_studies == len(records) == N
    assert release.n_findings == sum(len(_positives(r)) for r in records)
    assert release.n_boxes == sum(len(f["boxes"]) for r in records for f in _positives(r))
    assert 0 < release.n_patients < N and release.seconds > 0


def test_json_keys_exact(records: list[dict]) -> None:
    assert len({r["StudyID"] for r in records}) == len({r["ImageID"] for r in records}) == N
    for r in records:
        assert list(r) == RECORD_KEYS
        assert r["StudyID"].isdigit() and r["ImageID"].endswith(".png")
        stem = r["ImageID"][:-4].split("_")
        assert len(stem) == 2 and all(p.isdigit() for p in stem)
        assert r["findings"], "every study has at least one sentence"
        for f in r["findings"]:
            assert list(f) == (POSITIVE_KEYS if f["abnormal"] else NEGATIVE_KEYS)
            assert f["sentence_en"].endswith(".") and f["sentence_es"].endswith(".")
            if f["abnormal"]:
                assert f["labels"] and all(lab in LABEL_GROUPS for lab in f["labels"])
                assert f["locations"] and all(loc in LOCATIONS for loc in f["locations"])
                assert f["progression"] in (None, "stable", "improved", "worsened")
                assert len(f["extra_boxes"]) in (0, len(f["boxes"]))
        assert 1 <= len(_positives(r)) <= 3 or not _positives(r)


def test_csv_header_and_rows(
    records: list[dict], rows: list[dict], release: PhantomSummary
) -> None:
    with open(release.csv_path, encoding="utf-8", newline="") as fh:
        assert next(csv.reader(fh)) == list(CSV_COLUMNS)
    by_study: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_study[row["StudyID"]].append(row)
    normals = [r for r in records if not _positives(r)]
    assert normals, "some normal studies"
    assert sum(row["label"] == "Normal" for row in rows) == len(normals)
    for r in records:
        srows = by_study[r["StudyID"]]
        assert all(row["ImageID"] == r["ImageID"] for row in srows)
        if not _positives(r):
            assert [(row["label"], row["label_group"], row["boxes_count"]) for row in srows] == [
                ("Normal", "Normal", "0")
            ]
            continue
        expected = Counter((lab, f["sentence_en"]) for f in _positives(r) for lab in f["labels"])
        assert Counter((row["label"], row["sentence_en"]) for row in srows) == expected
        for f in _positives(r):
            for row in (row for row in srows if row["sentence_en"] == f["sentence_en"]):
                assert row["label_group"] == LABEL_GROUPS[row["label"]]
                assert int(row["boxes_count"]) == len(f["boxes"])
                assert int(row["extra_boxes_count"]) == len(f["extra_boxes"])
                assert ast.literal_eval(row["locations"]) == f["locations"]
                assert row["progression_status"] == (f["progression"] or "")
    for row in rows:
        assert row["prior_study"] in ("True", "False")
        assert (
            row["study_is_benchmark"] == row["patient_is_benchmark"] == str(row["split"] == "test")
        )
        assert row["study_is_validation"] == str(row["split"] == "validation")
        assert row["PatientSex_DICOM"] in ("M", "F")
        assert row["StudyDate"] == row["StudyDate_DICOM"] and len(row["StudyDate"]) == 8
        assert int(row["Year"]) == int(row["StudyDate"][:4])
        assert int(row["PatientAge"]) == int(row["Year"]) - int(row["PatientBirth"])


def test_boxes_strict_normalized_by_png_size(records: list[dict], release: PhantomSummary) -> None:
    n_boxes = 0
    for r in records:
        with Image.open(release.images_dir / r["ImageID"]) as im:
            assert im.mode in ("I;16", "I") and im.format == "PNG"
            w, h = im.size
            px = np.asarray(im)
        assert px.dtype == np.uint16 and 0 < int(px.max()) - int(px.min()) < 65535
        for f in _positives(r):
            for b in f["boxes"] + f["extra_boxes"]:
                assert 0.0 <= b[0] < b[2] <= 1.0 and 0.0 <= b[1] < b[3] <= 1.0
                # pixel-exact boxes: the corners land on pixel edges of THIS png
                for v, size in zip(b, (w, h, w, h)):
                    assert abs(v * size - round(v * size)) < 1e-3
                n_boxes += 1
    assert n_boxes > 0


def test_finding_is_visible_inside_its_box(big_plan) -> None:
    nodules = [
        (s, i) for s in big_plan for i, f in enumerate(s.render.findings) if f.ftype == "nodule"
    ][:5]
    assert nodules
    for s, i in nodules:
        spec = replace(s.render, findings=(s.render.findings[i],))
        with_f, without = render_study(spec), render_study(spec, with_findings=False)
        diff = np.abs(with_f.pixels.astype(np.int64) - without.pixels.astype(np.int64))
        ((x0, y0, x1, y1),) = with_f.boxes[0]
        inside = diff[y0:y1, x0:x1]
        outside = diff.copy()
        outside[y0:y1, x0:x1] = 0
        span = int(with_f.pixels.max()) - int(with_f.pixels.min())
        assert inside.mean() > 0.02 * span  # clearly visible
        assert outside.max() <= 0.2 * inside.max()  # only faint blur tails outside the box
        # the written image: the nodule is brighter (denser) than its surroundings
        img = with_f.pixels.astype(np.float64) * (-1 if spec.inverted else 1)
        ring = img[max(0, y0 - 4) : y1 + 4, max(0, x0 - 4) : x1 + 4]
        assert img[y0:y1, x0:x1].max() > np.median(ring)


def test_splits_are_disjoint_by_patient(rows: list[dict], big_plan) -> None:
    split_of: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        split_of[row["PatientID"]].add(row["split"])
    assert all(len(v) == 1 for v in split_of.values())
    patients = {s.patient_id: s.split for s in big_plan}
    for s in big_plan:
        assert patients[s.patient_id] == s.split
    frac = Counter(patients.values())
    n = len(patients)
    assert abs(frac["train"] / n - 0.7) < 0.05 and abs(frac["test"] / n - 0.2) < 0.05
    assert frac["validation"] > 0


def test_multi_study_patients_and_previous_links(
    records: list[dict], rows: list[dict], big_plan
) -> None:
    by_id = {r["StudyID"]: r for r in records}
    patient = {row["StudyID"]: row["PatientID"] for row in rows}
    date = {row["StudyID"]: row["StudyDate"] for row in rows}
    linked = [r for r in records if r["PreviousStudyID"] is not None]
    assert linked
    for r in linked:
        prev = by_id[r["PreviousStudyID"]]
        assert prev["ImageID"] == r["PreviousImageID"]
        assert patient[prev["StudyID"]] == patient[r["StudyID"]]
        assert date[prev["StudyID"]] < date[r["StudyID"]]
    for r in records:
        if r["PreviousStudyID"] is None:
            assert r["PreviousImageID"] is None
    counts = Counter(s.patient_id for s in big_plan)
    assert 0.1 < sum(c > 1 for c in counts.values()) / len(counts) < 0.3
    progressed = [f for s in big_plan for f in s.findings if f.progression is not None]
    assert progressed and all(
        s.previous_study_id for s in big_plan for f in s.findings if f.progression
    )


def test_coverage_of_types_groups_and_special_cases(big_plan) -> None:
    types = Counter(f.ftype for s in big_plan for f in s.render.findings)
    assert len(types) >= 8 and set(types) <= set(FINDING_TYPES)
    groups = {LABEL_GROUPS[lab] for s in big_plan for f in s.findings for lab in f.labels} | {
        "Normal"
    }
    assert groups == set(LABEL_GROUPS.values())
    assert 0.15 < sum(s.is_normal for s in big_plan) / len(big_plan) < 0.35
    positives = [f for s in big_plan for f in s.findings if f.abnormal]
    assert 0 < sum(not f.grounded for f in positives) < 0.08 * len(positives)
    assert sum(f.second_reader for f in positives) > 0
    assert any(f.labels[1:] for f in positives)  # some findings carry two labels
    for s in big_plan:  # no type+location repeated within a study
        keys = [(f.ftype, f.zones) for f in s.render.findings]
        assert len(keys) == len(set(keys))
    # the same type appears at several locations
    assert len({f.zones for s in big_plan for f in s.render.findings if f.ftype == "nodule"}) >= 3


def test_bilateral_findings_have_two_boxes(big_plan) -> None:
    checked = 0
    for s in big_plan:
        bil = [(i, f) for i, f in enumerate(s.render.findings) if len(f.zones) == 2]
        if not bil or checked >= 4:
            continue
        out = render_study(s.render)
        for i, f in bil:
            assert len(out.boxes[i]) == 2
            (a, b) = out.boxes[i]
            assert (
                a[2] <= b[0] or b[2] <= a[0] or f.ftype == "hilar enlargement"
            )  # image-left first
            checked += 1
    assert checked > 0
    for s in big_plan:
        for f in s.findings:
            if f.abnormal and "bilateral" in f.locations:
                assert f.locations[0] == "bilateral" and len(f.locations) == 3


def test_inverted_images(big_plan) -> None:
    inverted = [s for s in big_plan if s.render.inverted]
    assert 1 <= len(inverted) <= 20
    spec = inverted[0].render
    a = render_study(spec).pixels.astype(np.float64).ravel()
    b = render_study(replace(spec, inverted=False)).pixels.astype(np.float64).ravel()
    assert np.corrcoef(a, b)[0, 1] < -0.99


def test_deterministic_for_a_seed_and_seed_dependent(
    tmp_path: Path, release: PhantomSummary
) -> None:
    again = write_phantom_release(tmp_path / "again", N, seed=SEED, size=SIZE, workers=2)
    assert again.json_path.read_bytes() == release.json_path.read_bytes()
    assert again.csv_path.read_bytes() == release.csv_path.read_bytes()
    names = sorted(p.name for p in release.images_dir.iterdir())
    assert names == sorted(p.name for p in again.images_dir.iterdir())
    for name in names:
        assert (again.images_dir / name).read_bytes() == (release.images_dir / name).read_bytes()
    other = write_phantom_release(tmp_path / "other", 5, seed=SEED + 1, size=SIZE)
    assert other.json_path.read_bytes() != release.json_path.read_bytes()
    first = json.loads(other.json_path.read_text(encoding="utf-8"))[0]["ImageID"]
    assert first not in names


def test_sizes_and_aspects() -> None:
    plan = plan_release(60, seed=3, sizes=(120, 200))
    shapes = {(s.render.width, s.render.height) for s in plan}
    assert {max(wh) for wh in shapes} == {120, 200}
    assert any(w > h for w, h in shapes) and any(w < h for w, h in shapes)
    with pytest.raises(ValueError):
        plan_release(3, seed=0, sizes=(10,))


def test_the_padchest_gr_reader_reads_the_release(
    release: PhantomSummary, records: list[dict]
) -> None:
    from ricl.data.padchest_gr import load_padchest_gr

    ds = load_padchest_gr(release.out_dir)
    assert not ds.skipped and len(ds.studies) == N
    n_grounded = sum(bool(f["boxes"]) for r in records for f in _positives(r))
    assert len(ds.instances) == n_grounded
    for inst in ds.instances:
        assert inst.label_group == LABEL_GROUPS[inst.labels[0]]
        with Image.open(release.images_dir / inst.image_id) as im:
            assert inst.image_size == im.size
