"""Reader for MS-CXR (``MS_CXR_Local_Alignment_v1.1.0.csv``), read unchanged.

One CSV row per box: ``dicom_id, category_name, label_text, path, x, y, w, h,
image_width, image_height, split``; ``x, y`` is the top-left corner and ``w, h`` the
size, in pixels of the original image. Rows are grouped by (``dicom_id``,
``label_text``) into one instance; ``category_name`` is the label group. ``path`` is
relative to the MIMIC-CXR(-JPG) root, from which the patient (``p1xxxxxxx``) and study
(``s5xxxxxxx``) ids are read.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path

from ricl.data.dataset import GroundingDataset, SkippedRecord, canonical_split
from ricl.errors import DatasetFormatError, InvalidBoxError
from ricl.types import Box, Finding, Instance, Study

__all__ = ["MS_CXR_COLUMNS", "load_ms_cxr"]

MS_CXR_COLUMNS = (
    "dicom_id",
    "category_name",
    "label_text",
    "path",
    "x",
    "y",
    "w",
    "h",
    "image_width",
    "image_height",
    "split",
)
# MIMIC-CXR paths: files/p10/p10000032/s50414267/<dicom_id>.jpg ("p10" is a bucket folder,
# the patient is the LAST p-segment).
_PATIENT = re.compile(r"(?:^|/)(p\d+)(?=/)")
_STUDY = re.compile(r"(?:^|/)(s\d+)(?=/)")


def _find_csv(root: Path) -> Path:
    if root.is_file():
        return root
    found = sorted(root.glob("MS_CXR_Local_Alignment_v*.csv"))
    if not found:
        raise DatasetFormatError(
            f"{root}: no MS_CXR_Local_Alignment_v*.csv found; point --root at the MS-CXR folder"
        )
    return found[-1]


def _num(row: dict[str, str], key: str, where: str) -> float:
    try:
        return float(row[key])
    except (TypeError, ValueError):
        raise DatasetFormatError(
            f"{where}: column {key!r} = {row[key]!r} is not a number"
        ) from None


def load_ms_cxr(
    root: str | Path,
    images: str | Path | None = None,
    *,
    on_error: str = "raise",
    name: str = "ms-cxr",
) -> GroundingDataset:
    """Read MS-CXR into studies (one per image) and instances (one per phrase).

    Args:
        root: the MS-CXR folder (or the CSV file itself).
        images: the MIMIC-CXR-JPG root that ``path`` is relative to (optional).
        on_error: ``raise`` or ``skip`` (a skipped image is listed in ``dataset.skipped``).

    Raises:
        DatasetFormatError: naming the CSV line and the problem (bad number, box outside
            the image, inconsistent image size, unknown split).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    root = Path(root)
    csv_path = _find_csv(root)
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in MS_CXR_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetFormatError(
                f"{csv_path}: missing columns {missing}; found {reader.fieldnames}"
            )
        rows = [(n, row) for n, row in enumerate(reader, start=2)]

    by_image: dict[str, list[tuple[int, dict[str, str]]]] = defaultdict(list)
    for n, row in rows:
        by_image[row["dicom_id"].strip()].append((n, row))

    images_root = Path(images) if images is not None else None
    if images_root is not None and not images_root.is_dir():
        raise DatasetFormatError(f"{images_root}: images folder does not exist")
    studies: list[Study] = []
    instances: list[Instance] = []
    skipped: list[SkippedRecord] = []
    for dicom_id, image_rows in by_image.items():
        where = (
            f"{csv_path.name} lines {image_rows[0][0]}-{image_rows[-1][0]} (dicom_id {dicom_id})"
        )
        try:
            study, insts = _image(dicom_id, image_rows, csv_path.name, name)
        except DatasetFormatError as e:
            if on_error == "raise":
                raise
            skipped.append(SkippedRecord(where=where, reason=str(e)))
            continue
        studies.append(study)
        instances.extend(insts)
    return GroundingDataset(name, root, images_root, tuple(studies), tuple(instances), skipped)


def _image(
    dicom_id: str, rows: list[tuple[int, dict[str, str]]], fname: str, dataset: str
) -> tuple[Study, list[Instance]]:
    first_line, first = rows[0]
    where0 = f"{fname} line {first_line} (dicom_id {dicom_id})"
    if not dicom_id:
        raise DatasetFormatError(f"{where0}: empty dicom_id")
    width = int(_num(first, "image_width", where0))
    height = int(_num(first, "image_height", where0))
    if width <= 0 or height <= 0:
        raise DatasetFormatError(f"{where0}: image size {width}x{height} must be positive")
    path = first["path"].strip()
    split = canonical_split(first["split"], where0)
    phrases: dict[str, list[Box]] = {}
    category: dict[str, str] = {}
    for n, row in rows:
        where = f"{fname} line {n} (dicom_id {dicom_id})"
        if (int(_num(row, "image_width", where)), int(_num(row, "image_height", where))) != (
            width,
            height,
        ):
            raise DatasetFormatError(f"{where}: image size differs from line {first_line}")
        if canonical_split(row["split"], where) != split or row["path"].strip() != path:
            raise DatasetFormatError(f"{where}: split or path differs from line {first_line}")
        x, y, w, h = (_num(row, k, where) for k in ("x", "y", "w", "h"))
        try:
            box = Box.from_xywh_pixels(x, y, w, h, width, height)
        except InvalidBoxError as e:
            raise DatasetFormatError(
                f"{where}: box x={x}, y={y}, w={w}, h={h} does not fit the {width}x{height} image: {e}"
            ) from None
        text = row["label_text"].strip()
        phrases.setdefault(text, []).append(box)
        category.setdefault(text, row["category_name"].strip())
    patients, studies = _PATIENT.findall(path), _STUDY.findall(path)
    patient = patients[-1] if patients else dicom_id
    study_id = studies[-1] if studies else dicom_id
    findings = tuple(
        Finding(
            index=i,
            sentence_en=text,
            abnormal=True,
            boxes=tuple(boxes),
            labels=(category[text],),
            label_group=category[text],
        )
        for i, (text, boxes) in enumerate(phrases.items())
    )
    study = Study(
        study_id=study_id,
        image_id=dicom_id,
        patient_id=patient,
        split=split,
        image_path=path,
        findings=findings,
        image_size=(width, height),
    )
    instances = [
        Instance(
            instance_id=f"{dicom_id}/{f.index}",
            dataset=dataset,
            study_id=study_id,
            image_id=dicom_id,
            patient_id=patient,
            split=split,
            image_path=path,
            phrase=f.sentence_en,
            boxes=f.boxes,
            image_size=(width, height),
            finding_index=f.index,
            labels=f.labels,
            label_group=f.label_group,
        )
        for f in findings
    ]
    return study, instances
