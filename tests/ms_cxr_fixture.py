"""Helpers of the MS-CXR tests: one CSV row and a release folder holding the CSV."""

import csv

from ricl.data.ms_cxr import MS_CXR_COLUMNS

PATH = "files/p10/p10000032/s50414267/02aa804e-bde0afdd.jpg"


def _row(**kw):
    base = {"dicom_id": "02aa804e-bde0afdd", "category_name": "Pneumonia", "label_text": "left basal pneumonia",
                "path": PATH, "x": "100", "y": "400", "w": "200", "h": "100", "image_width": "1000", "image_height": "800", "split": "val"}  # fmt: skip
    return {**base, **kw}


def _write(tmp_path, rows):
    p = tmp_path / "MS_CXR_Local_Alignment_v1.1.0.csv"
    with p.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=MS_CXR_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return tmp_path
