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
from collections.abc import Callable
from pathlib import Path

from ricl.data.dataset import (
    GroundingDataset,
    OnError,
    ReaderOptions,
    Reference,
    canonical_split,
    read_records,
    safe_join,
)
from ricl.errors import DatasetFormatError, ImageLoadError, InvalidBoxError
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
    keep_unboxed: bool = False,
    reference: Reference = "primary",
    on_error: OnError = "raise",
    read_image_sizes: bool = True,
    name: str = "ms-cxr",
) -> GroundingDataset:
    """Read MS-CXR into studies (one per image) and instances (one per phrase).

    Args:
        root: the MS-CXR folder (or the CSV file itself).
        images: the MIMIC-CXR-JPG root that ``path`` is relative to (optional).
        keep_unboxed, reference, on_error, read_image_sizes: the reader options every
            reader takes, see :class:`~ricl.data.dataset.ReaderOptions`. Here a bad
            record is one image (all its CSV rows); ``skip`` drops that image. Every
            phrase has boxes, so ``keep_unboxed`` changes nothing; MS-CXR has one reader,
            so ``reference="both"`` is ``"primary"`` and ``"extra"`` raises ValueError;
            with ``read_image_sizes`` and ``images``, each image's header must match the
            CSV's ``image_width, image_height``.

    Raises:
        DatasetFormatError: naming the CSV line and the problem (bad number, box outside
            the image, inconsistent image size, unknown split, missing image).
        ValueError: an option value outside :class:`~ricl.data.dataset.ReaderOptions`,
            or ``reference="extra"``.
    """
    opts = ReaderOptions(
        keep_unboxed=keep_unboxed,
        reference=reference,
        on_error=on_error,
        read_image_sizes=read_image_sizes,
    )
    if opts.reference == "extra":
        raise ValueError(
            f"{name}: reference='extra' needs a second reader's boxes, which MS-CXR does not "
            "have (every phrase would lose its gold); use reference='primary' or 'both'"
        )
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
    size_of: Callable[[Path], tuple[int, int]] | None = None
    if images_root is not None and opts.read_image_sizes:
        from ricl.data.images import read_image_size as size_of

    parsed, skipped = read_records(
        (
            (
                f"{csv_path.name} lines {rows[0][0]}-{rows[-1][0]} (dicom_id {dicom_id})",
                (dicom_id, rows),
            )
            for dicom_id, rows in by_image.items()
        ),
        lambda _where, item: _image(
            item[0], item[1], csv_path.name, name, opts, images_root, size_of
        ),
        opts.on_error,
        csv_path,
    )
    studies = [study for study, _ in parsed]
    instances = [i for _, insts in parsed for i in insts]
    return GroundingDataset(name, root, images_root, tuple(studies), tuple(instances), skipped)


def _image(
    dicom_id: str,
    rows: list[tuple[int, dict[str, str]]],
    fname: str,
    dataset: str,
    opts: ReaderOptions,
    images_root: Path | None,
    size_of: Callable[[Path], tuple[int, int]] | None,
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
    if images_root is not None:
        full = safe_join(images_root, path, where0)
        if size_of is not None:
            _check_image_size(full, (width, height), size_of, where0)
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
            boxes=gold,
            image_size=(width, height),
            finding_index=f.index,
            labels=f.labels,
            label_group=f.label_group,
        )
        for f in findings
        if (gold := opts.gold(f.boxes, f.extra_boxes)) or opts.keep_unboxed
    ]
    return study, instances


def _check_image_size(
    path: Path,
    csv_size: tuple[int, int],
    size_of: Callable[[Path], tuple[int, int]],
    where: str,
) -> None:
    if not path.is_file():
        raise DatasetFormatError(
            f"{where}: image {path} not found; pass images=DIR pointing at the MIMIC-CXR-JPG "
            "root the 'path' column is relative to, or read_image_sizes=False to read "
            "annotations only"
        )
    try:
        size = size_of(path)
    except ImageLoadError as e:
        raise DatasetFormatError(f"{where}: {e}") from None
    if tuple(size) != csv_size:
        raise DatasetFormatError(
            f"{where}: image {path} is {size[0]}x{size[1]} but the CSV says "
            f"{csv_size[0]}x{csv_size[1]}; the boxes are in the CSV's pixels, so the images "
            "must be the full-size originals"
        )
