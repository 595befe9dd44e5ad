"""Reader for the official PadChest-GR release files, read unchanged.

Release layout (what this reader expects under ``root``)::

    grounded_reports_<date>.json     one record per study: StudyID, ImageID,
                                     PreviousStudyID, PreviousImageID, findings[...]
    master_table.csv (or .csv.zip)   one row per (study, label) + one 'Normal' row per
                                     normal study: split, PatientID, label_group, ...
    Padchest_GR_files/PadChest_GR/<ImageID>   16-bit PNGs (any folder via ``images=``)

Sentences and boxes come from the JSON; split, patient id and label group from the CSV.
Strict where the format is certain (types, box ranges, ids that must join), tolerant
where it varies (optional keys of negative findings, extra columns, a zipped CSV).
"""

from __future__ import annotations

import ast
import csv
import io
import json
import math
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

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

__all__ = [
    "DEFAULT_IMAGES_SUBDIR",
    "MASTER_TABLE_COLUMNS",
    "find_reports_file",
    "load_padchest_gr",
    "parse_list_string",
]

DEFAULT_IMAGES_SUBDIR = Path("Padchest_GR_files") / "PadChest_GR"
# master_table.csv header of the official release, in order (the phantom writer uses it too)
MASTER_TABLE_COLUMNS: tuple[str, ...] = (
    "StudyID", "ImageID", "label", "boxes_count", "extra_boxes_count", "locations", "prior_study",
    "progression_status", "prior_imageID", "sentence_en", "sentence_es", "study_is_benchmark",
    "study_is_validation", "split", "PatientID", "patient_is_benchmark", "PatientBirth",
    "PatientSex_DICOM", "StudyDate_DICOM", "StudyDate", "PatientAge", "label_group", "Year",
)  # fmt: skip

# CSV columns that describe one (study, label) row rather than the study.
_PER_ROW_COLUMNS = frozenset(
    {
        "label",
        "label_group",
        "locations",
        "sentence_en",
        "sentence_es",
        "boxes_count",
        "extra_boxes_count",
    }
)
_CSV_REQUIRED = ("StudyID", "ImageID", "label", "split", "PatientID", "label_group")


def find_reports_file(root: Path) -> Path:
    """The ``grounded_reports_*.json`` under ``root`` (the newest by name if several)."""
    candidates = sorted(root.glob("grounded_reports_*.json"))
    if not candidates:
        raise DatasetFormatError(
            f"{root}: no grounded_reports_*.json found; point --root at the PadChest-GR release "
            "folder (the one holding grounded_reports_20240819.json and master_table.csv)"
        )
    return candidates[-1]


def parse_list_string(value: str, where: str) -> list[str]:
    """Parse a Python-style list string such as ``"['pleural', 'right']"`` without eval.

    Empty strings and ``nan`` give ``[]``; a bare string gives ``[value]``.
    """
    text = (value or "").strip()
    if not text or text.lower() in {"nan", "none", "[]"}:
        return []
    if not text.startswith("["):
        return [text]
    try:
        parsed = ast.literal_eval(text)  # literals only: never executes code
    except (ValueError, SyntaxError):
        raise DatasetFormatError(f"{where}: cannot read the list {value!r}") from None
    if not isinstance(parsed, list) or not all(isinstance(v, str) for v in parsed):
        raise DatasetFormatError(f"{where}: expected a list of strings, got {value!r}")
    return parsed


def _read_csv_rows(root: Path) -> tuple[Path, list[dict[str, str]]]:
    path = root / "master_table.csv"
    if path.is_file():
        text = path.read_text(encoding="utf-8-sig")
    elif (zpath := root / "master_table.csv.zip").is_file():
        path = zpath
        with zipfile.ZipFile(zpath) as zf:
            names = [n for n in zf.namelist() if n.endswith("master_table.csv")]
            if not names:
                raise DatasetFormatError(f"{zpath}: holds no master_table.csv")
            text = zf.read(names[0]).decode("utf-8-sig")
    else:
        raise DatasetFormatError(
            f"{root}: master_table.csv (or master_table.csv.zip) not found; it gives each study's "
            "split, patient id and label groups and ships with the PadChest-GR release"
        )
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in _CSV_REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise DatasetFormatError(f"{path}: missing columns {missing}; found {reader.fieldnames}")
    return path, list(reader)


class _StudyTable:
    """The CSV, indexed by StudyID: split, patient, label groups, other columns."""

    def __init__(self, path: Path, rows: list[dict[str, str]]) -> None:
        self.path = path
        self.split: dict[str, str] = {}
        self.patient: dict[str, str] = {}
        self.metadata: dict[str, dict[str, str]] = {}
        self.group_by_label: dict[tuple[str, str], str] = {}
        self.group_by_sentence: dict[tuple[str, str], str] = {}
        self.locations_by_label: dict[tuple[str, str], tuple[str, ...]] = {}
        for line_no, row in enumerate(rows, start=2):
            where = f"{path} line {line_no} (StudyID {row.get('StudyID')!r})"
            sid = (row["StudyID"] or "").strip()
            if not sid:
                raise DatasetFormatError(f"{where}: empty StudyID")
            split = canonical_split(row["split"] or "", where)
            pid = (row["PatientID"] or "").strip()
            if not pid:
                raise DatasetFormatError(f"{where}: empty PatientID")
            if self.split.setdefault(sid, split) != split:
                raise DatasetFormatError(
                    f"{where}: study is in split {self.split[sid]!r} and {split!r}"
                )
            if self.patient.setdefault(sid, pid) != pid:
                raise DatasetFormatError(
                    f"{where}: study has patients {self.patient[sid]!r} and {pid!r}"
                )
            self.metadata.setdefault(
                sid, {k: v for k, v in row.items() if k is not None and k not in _PER_ROW_COLUMNS}
            )
            label = (row["label"] or "").strip().lower()
            if row.get("locations"):
                self.locations_by_label.setdefault(
                    (sid, label), tuple(parse_list_string(row["locations"], f"{where} 'locations'"))
                )
            group = (row["label_group"] or "").strip()
            if group:
                self.group_by_label.setdefault((sid, label), group)
                if row.get("sentence_en"):
                    self.group_by_sentence.setdefault((sid, row["sentence_en"].strip()), group)

    def label_group(self, sid: str, labels: tuple[str, ...], sentence: str) -> str | None:
        for label in labels:
            if (g := self.group_by_label.get((sid, label.strip().lower()))) is not None:
                return g
        return self.group_by_sentence.get((sid, sentence.strip()))

    def locations(self, sid: str, labels: tuple[str, ...]) -> tuple[str, ...]:
        """CSV locations of a finding's labels: the fallback when its JSON record has none."""
        out: list[str] = []
        for label in labels:
            out += [
                x
                for x in self.locations_by_label.get((sid, label.strip().lower()), ())
                if x not in out
            ]
        return tuple(out)


def _str_list(value: Any, key: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DatasetFormatError(f"{where}: '{key}' must be a list of strings, got {value!r}")
    return tuple(value)


def _boxes(value: Any, key: str, where: str) -> tuple[Box, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise DatasetFormatError(f"{where}: '{key}' must be a list of [x_min, y_min, x_max, y_max]")
    out = []
    for j, b in enumerate(value):
        if (
            not isinstance(b, list)
            or len(b) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in b)
        ):
            raise DatasetFormatError(f"{where}: {key}[{j}] = {b!r} is not 4 numbers")
        try:
            out.append(Box.from_list(b))
        except InvalidBoxError as e:
            raise DatasetFormatError(f"{where}: {key}[{j}] = {b!r}: {e}") from None
    return tuple(out)


def _finding(raw: Any, index: int, where: str) -> Finding:
    if not isinstance(raw, dict):
        raise DatasetFormatError(f"{where}: finding must be an object, got {type(raw).__name__}")
    for key in ("sentence_en", "abnormal"):
        if key not in raw:
            raise DatasetFormatError(f"{where}: missing required key {key!r}")
    if not isinstance(raw["sentence_en"], str):
        raise DatasetFormatError(f"{where}: 'sentence_en' must be a string")
    if not isinstance(raw["abnormal"], bool):
        raise DatasetFormatError(
            f"{where}: 'abnormal' must be true or false, got {raw['abnormal']!r}"
        )
    progression = raw.get("progression")
    if progression is not None and not isinstance(progression, str):
        raise DatasetFormatError(f"{where}: 'progression' must be null or a string")
    return Finding(
        index=index,
        sentence_en=raw["sentence_en"],
        sentence_es=raw.get("sentence_es") or "",
        abnormal=raw["abnormal"],
        boxes=_boxes(raw.get("boxes"), "boxes", where),
        extra_boxes=_boxes(raw.get("extra_boxes"), "extra_boxes", where),
        labels=_str_list(raw.get("labels"), "labels", where),
        locations=_str_list(raw.get("locations"), "locations", where),
        progression=progression,
    )


def _optional_id(record: Mapping[str, Any], key: str, where: str) -> str | None:
    v = record.get(key)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (str, int)) and not isinstance(v, bool):
        return str(v)
    raise DatasetFormatError(f"{where}: {key!r} must be a string or null, got {v!r}")


def load_padchest_gr(
    root: str | Path,
    images: str | Path | None = None,
    *,
    keep_unboxed: bool = False,
    reference: Reference = "primary",
    on_error: OnError = "raise",
    read_image_sizes: bool = True,
    name: str = "padchest-gr",
) -> GroundingDataset:
    """Read a PadChest-GR release (or a phantom release in the same format).

    Args:
        root: folder with ``grounded_reports_*.json`` and ``master_table.csv``.
        images: folder the ``ImageID`` file names are relative to; default
            ``root/Padchest_GR_files/PadChest_GR`` when it exists, else no images.
        keep_unboxed, reference, on_error, read_image_sizes: the reader options every
            reader takes, see :class:`~ricl.data.dataset.ReaderOptions`. Here a bad
            record is one study of the JSON; ``skip`` drops that study.

    Raises:
        DatasetFormatError: naming the file and record (StudyID, finding index) and the fix.
        ValueError: an option value outside :class:`~ricl.data.dataset.ReaderOptions`.
    """
    opts = ReaderOptions(
        keep_unboxed=keep_unboxed,
        reference=reference,
        on_error=on_error,
        read_image_sizes=read_image_sizes,
    )
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(f"{root}: not a folder; pass the PadChest-GR release folder")
    reports_path = find_reports_file(root)
    table = _StudyTable(*_read_csv_rows(root))
    images_root = _images_root(root, images)
    try:
        records = json.loads(reports_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DatasetFormatError(f"{reports_path}: not valid JSON ({e})") from None
    if not isinstance(records, list):
        raise DatasetFormatError(f"{reports_path}: expected a JSON list of study records")

    size_of: Callable[[Path], tuple[int, int]] | None = None
    if images_root is not None and opts.read_image_sizes:
        from ricl.data.images import read_image_size as size_of

    seen: set[str] = set()
    studies, skipped = read_records(
        ((f"{reports_path.name} record {n}", record) for n, record in enumerate(records)),
        lambda where, record: _study(record, where, table, images_root, size_of, seen),
        opts.on_error,
        reports_path,
    )
    instances = [i for study in studies for i in _instances(study, name, opts)]
    return GroundingDataset(name, root, images_root, tuple(studies), tuple(instances), skipped)


def _images_root(root: Path, images: str | Path | None) -> Path | None:
    if images is not None:
        path = Path(images)
        if not path.is_dir():
            raise DatasetFormatError(f"{path}: images folder does not exist")
        return path
    default = root / DEFAULT_IMAGES_SUBDIR
    return default if default.is_dir() else None


def _study(
    record: Any,
    where: str,
    table: _StudyTable,
    images_root: Path | None,
    size_of: Callable[[Path], tuple[int, int]] | None,
    seen: set[str],
) -> Study:
    if not isinstance(record, dict):
        raise DatasetFormatError(f"{where}: expected an object, got {type(record).__name__}")
    for key in ("StudyID", "ImageID", "findings"):
        if key not in record:
            raise DatasetFormatError(f"{where}: missing required key {key!r}")
    sid, image_id = record["StudyID"], record["ImageID"]
    if not isinstance(sid, (str, int)) or isinstance(sid, bool):
        raise DatasetFormatError(f"{where}: StudyID must be a string, got {sid!r}")
    sid = str(sid)
    where = f"{where} (StudyID {sid})"
    if sid in seen:
        raise DatasetFormatError(f"{where}: duplicate StudyID")
    if not isinstance(image_id, str) or not image_id.lower().endswith(".png"):
        raise DatasetFormatError(f"{where}: ImageID must be a .png file name, got {image_id!r}")
    if not isinstance(record["findings"], list):
        raise DatasetFormatError(f"{where}: 'findings' must be a list")
    if sid not in table.split:
        raise DatasetFormatError(
            f"{where}: no row in {table.path.name}; the JSON and CSV must come from the same release"
        )
    findings = []
    for i, raw in enumerate(record["findings"]):
        f = _finding(raw, i, f"{where} finding {i}")
        if f.abnormal:
            f = replace(
                f,
                label_group=table.label_group(sid, f.labels, f.sentence_en),
                locations=f.locations or table.locations(sid, f.labels),
            )
        findings.append(f)
    size = None
    if images_root is not None:
        path = safe_join(images_root, image_id, where)
        if size_of is not None:
            if not path.is_file():
                raise DatasetFormatError(
                    f"{where}: image {path} not found; pass images=DIR pointing at the folder of the "
                    "release PNGs, or read_image_sizes=False to read annotations only"
                )
            try:
                size = size_of(path)
            except ImageLoadError as e:
                raise DatasetFormatError(f"{where}: {e}") from None
    seen.add(sid)
    return Study(
        study_id=sid,
        image_id=image_id,
        patient_id=table.patient[sid],
        split=table.split[sid],
        image_path=image_id,
        findings=tuple(findings),
        image_size=size,
        previous_study_id=_optional_id(record, "PreviousStudyID", where),
        previous_image_id=_optional_id(record, "PreviousImageID", where),
        metadata=table.metadata[sid],
    )


def _instances(study: Study, dataset: str, opts: ReaderOptions) -> list[Instance]:
    out = []
    for f in study.findings:
        if not f.abnormal:
            continue
        gold = opts.gold(f.boxes, f.extra_boxes)
        if not gold and not opts.keep_unboxed:
            continue
        out.append(
            Instance(
                instance_id=f"{study.study_id}/{f.index}",
                dataset=dataset,
                study_id=study.study_id,
                image_id=study.image_id,
                patient_id=study.patient_id,
                split=study.split,
                image_path=study.image_path,
                phrase=f.sentence_en,
                boxes=gold,
                image_size=study.image_size,
                finding_index=f.index,
                extra_boxes=f.extra_boxes,
                labels=f.labels,
                locations=f.locations,
                label_group=f.label_group,
                sentence_es=f.sentence_es,
            )
        )
    return out
