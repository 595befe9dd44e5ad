"""A tiny hand-written PadChest-GR release, written in the official file format.

Independent of ricl's phantom generator, so the reader is checked against the format
itself, not only against our own writer.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

CSV_COLUMNS = [
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
]


def records() -> list[dict]:
    return [
        {
            "StudyID": "1001",
            "ImageID": "1001_a.png",
            "PreviousStudyID": None,
            "PreviousImageID": None,
            "findings": [
                {
                    "sentence_en": "No abnormalities.",
                    "sentence_es": "Sin hallazgos.",
                    "abnormal": False,
                }
            ],
        },
        {
            "StudyID": "1002",
            "ImageID": "1002_b.png",
            "PreviousStudyID": "1001",
            "PreviousImageID": "1001_a.png",
            "findings": [
                {
                    "sentence_en": "Bilateral pleural effusion.",
                    "sentence_es": "Derrame pleural bilateral.",
                    "abnormal": True,
                    "boxes": [[0.05, 0.7, 0.3, 0.9], [0.7, 0.72, 0.95, 0.9]],
                    "extra_boxes": [],
                    "labels": ["pleural effusion"],
                    "locations": ["bilateral"],
                    "progression": "stable",
                },
                {
                    "sentence_en": "Nodule in the right upper lobe.",
                    "sentence_es": "Nodulo en lobulo superior derecho.",
                    "abnormal": True,
                    "boxes": [[0.2, 0.2, 0.3, 0.3]],
                    "extra_boxes": [[0.21, 0.19, 0.31, 0.29]],
                    "labels": ["nodule"],
                    "locations": [],
                    "progression": None,
                },
                {
                    "sentence_en": "No pneumothorax.",
                    "sentence_es": "Sin neumotorax.",
                    "abnormal": False,
                },
            ],
        },
        {
            "StudyID": "2001",
            "ImageID": "2001_c.png",
            "PreviousStudyID": None,
            "PreviousImageID": None,
            "findings": [
                {
                    "sentence_en": "Cardiomegaly.",
                    "sentence_es": "Cardiomegalia.",
                    "abnormal": True,
                    "boxes": [],
                    "extra_boxes": [],
                    "labels": ["cardiomegaly"],
                    "locations": ["cardiac"],
                    "progression": None,
                }
            ],
        },
    ]


def rows() -> list[dict]:
    base = {c: "" for c in CSV_COLUMNS}

    def row(**kw):
        return {**base, "study_is_benchmark": "True", "study_is_validation": "False", **kw}

    return [
        row(StudyID="1001", ImageID="1001_a.png", label="Normal", boxes_count="0", extra_boxes_count="0",
            locations="[]", split="train", PatientID="P1", label_group="Normal", PatientSex_DICOM="F"),
        row(StudyID="1002", ImageID="1002_b.png", label="pleural effusion", boxes_count="2",
            locations="['bilateral']", split="train", PatientID="P1", label_group="pleural",
            sentence_en="Bilateral pleural effusion.", PatientSex_DICOM="F"),
        row(StudyID="1002", ImageID="1002_b.png", label="nodule", boxes_count="1",
            locations="['right upper lobe']", split="train", PatientID="P1", label_group="nodule/mass",
            sentence_en="Nodule in the right upper lobe.", PatientSex_DICOM="F"),
        row(StudyID="2001", ImageID="2001_c.png", label="cardiomegaly", boxes_count="0",
            locations="['cardiac']", split="test", PatientID="P2", label_group="cardiac",
            sentence_en="Cardiomegaly.", PatientSex_DICOM="M"),
    ]  # fmt: skip


SIZES = {"1001_a.png": (64, 48), "1002_b.png": (50, 70), "2001_c.png": (40, 40)}


def write_release(root: Path, recs: list[dict] | None = None, csv_rows: list[dict] | None = None,
                  images: bool = True) -> Path:  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    (root / "grounded_reports_20240819.json").write_text(
        json.dumps(records() if recs is None else recs)
    )
    with (root / "master_table.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        w.writeheader()
        w.writerows(rows() if csv_rows is None else csv_rows)
    if images:
        img_dir = root / "Padchest_GR_files" / "PadChest_GR"
        img_dir.mkdir(parents=True, exist_ok=True)
        for name, (w_, h_) in SIZES.items():
            arr = (np.arange(w_ * h_).reshape(h_, w_) * 7 + 1000).astype(np.uint16)
            Image.fromarray(arr).save(img_dir / name)
    return root
