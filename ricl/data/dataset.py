"""The in-memory grounding dataset every reader returns."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar

from ricl.errors import DatasetFormatError
from ricl.types import Instance, Study

__all__ = [
    "GroundingDataset",
    "OnError",
    "ReaderOptions",
    "Reference",
    "SkippedRecord",
    "canonical_split",
    "read_records",
    "safe_join",
]

log = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
Reference = Literal["primary", "extra", "both"]
_T = TypeVar("_T")
_R = TypeVar("_R")

_SPLITS = {
    "train": "train",
    "training": "train",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "dev": "validation",
    "test": "test",
}


def canonical_split(value: str, where: str) -> str:
    """Map a split name onto ``train`` / ``validation`` / ``test`` (MS-CXR says ``val``)."""
    try:
        return _SPLITS[value.strip().lower()]
    except KeyError:
        raise DatasetFormatError(
            f"{where}: unknown split {value!r}; expected one of train, validation (val), test"
        ) from None


def safe_join(root: Path, relative: str, where: str) -> Path:
    """``root / relative``, refusing absolute paths and anything that escapes ``root``.

    Paths come from data files, which must never reach outside their images folder.
    """
    rel = Path(relative)
    if rel.is_absolute() or not relative.strip():
        raise DatasetFormatError(
            f"{where}: image path {relative!r} must be relative to the images folder"
        )
    root_resolved = root.resolve()
    full = (root_resolved / rel).resolve()
    if not full.is_relative_to(root_resolved):
        raise DatasetFormatError(
            f"{where}: image path {relative!r} escapes the images folder {root}; refusing to read it"
        )
    return full


@dataclass(frozen=True, slots=True)
class ReaderOptions:
    """The options every dataset reader accepts, with the same names, values and defaults.

    Callers pass them to :func:`ricl.data.registry.load_dataset` (or a reader) without
    looking at which dataset they read; an option a format has no use for is accepted
    and does what its documentation below says for that format.

    ``keep_unboxed`` (default False): also make instances of positive findings that have
        no gold boxes (their gold is then empty). PadChest-GR/phantom: positive
        findings without ``boxes`` (for the chosen ``reference``). MS-CXR: every CSV row
        is a box, so every phrase has one; the option changes nothing.
    ``reference`` (default ``"primary"``): which boxes are an instance's gold.
        ``primary``: the benchmark's reference (PadChest-GR ``boxes``; MS-CXR's boxes);
        ``extra``: the second reader's ``extra_boxes`` (PadChest-GR only; MS-CXR has one
        reader, so ``extra`` raises ValueError there instead of leaving no gold);
        ``both``: their union (on MS-CXR the same as ``primary``).
        ``Instance.extra_boxes`` always carries the second reader's boxes.
    ``on_error`` (default ``"raise"``): what a bad record does. ``raise`` stops at the
        first one with a DatasetFormatError naming the file, the record and the problem;
        ``skip`` drops that record (a PadChest-GR study, an MS-CXR image) and lists it in
        ``GroundingDataset.skipped`` (and logs a warning with the count): never silently.
        File-level problems (missing file, missing columns, invalid JSON) always raise.
    ``read_image_sizes`` (default True): with an images folder, read each image's
        (width, height) from its header (cheap, no pixels). A missing or unreadable
        image is then a bad record of its study. PadChest-GR: the sizes come only from
        the images, so with False (or no images folder) ``image_size`` is None.
        MS-CXR: the sizes come from the CSV; with True the image header must agree with
        them (boxes are in those pixels); with False the images are not opened.

    Raises:
        ValueError: a value outside those above; TypeError: a non-bool flag.
    """

    keep_unboxed: bool = False
    reference: Reference = "primary"
    on_error: OnError = "raise"
    read_image_sizes: bool = True

    def __post_init__(self) -> None:
        for key in ("keep_unboxed", "read_image_sizes"):
            if not isinstance(getattr(self, key), bool):
                raise TypeError(f"{key} must be true or false, got {getattr(self, key)!r}")
        if self.reference not in ("primary", "extra", "both"):
            raise ValueError(
                f"reference must be 'primary', 'extra' or 'both', got {self.reference!r}"
            )
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {self.on_error!r}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any], dataset: str = "dataset") -> ReaderOptions:
        """Validated options from keyword options; an unknown name raises ValueError naming it."""
        unknown = sorted(set(options) - set(cls.names()))
        if unknown:
            raise ValueError(
                f"{dataset}: unknown reader option(s) {', '.join(map(repr, unknown))}; "
                f"the known ones are {', '.join(cls.names())}"
            )
        return cls(**options)

    def as_kwargs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.names()}

    def gold(self, boxes: tuple[Any, ...], extra_boxes: tuple[Any, ...]) -> tuple[Any, ...]:
        """An instance's gold boxes under ``reference``."""
        return {"primary": boxes, "extra": extra_boxes, "both": boxes + extra_boxes}[self.reference]


def read_records(
    records: Iterable[tuple[str, _R]],
    parse_one: Callable[[str, _R], _T],
    on_error: OnError,
    source: str | Path,
) -> tuple[list[_T], list[SkippedRecord]]:
    """``parse_one(where, record)`` for each ``(where, record)``: every reader's raise/skip loop.

    ``where`` names the record in ``source`` (the file), e.g. ``"reports.json record 3"``.
    A DatasetFormatError from ``parse_one`` (whose message names the file, the record
    and what to fix) is re-raised with ``on_error="raise"``; with ``"skip"`` the record
    is listed as a SkippedRecord and a warning logs how many of ``source`` were skipped.
    Other exceptions are bugs and propagate.
    """
    parsed: list[_T] = []
    skipped: list[SkippedRecord] = []
    for where, record in records:
        try:
            parsed.append(parse_one(where, record))
        except DatasetFormatError as e:
            if on_error == "raise":
                raise
            skipped.append(SkippedRecord(where=where, reason=str(e)))
    if skipped:
        log.warning(
            "%s: skipped %d bad record(s) (on_error='skip'); first: %s",
            source,
            len(skipped),
            skipped[0].reason,
        )
    return parsed, skipped


@dataclass(frozen=True, slots=True)
class SkippedRecord:
    """A record a reader skipped because the user asked for skipping instead of raising."""

    where: str
    reason: str


@dataclass(slots=True)
class GroundingDataset:
    """Studies of one dataset release plus the phrase-grounding instances derived from them.

    ``images_root``: the folder that ``Study.image_path`` is relative to (None when the
    reader was not given one). ``skipped``: records dropped with ``on_error="skip"``,
    never silently.
    """

    name: str
    root: Path
    images_root: Path | None
    studies: tuple[Study, ...]
    instances: tuple[Instance, ...]
    skipped: list[SkippedRecord] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.instances)

    def __iter__(self) -> Iterator[Instance]:
        return iter(self.instances)

    @property
    def splits(self) -> list[str]:
        order = {"train": 0, "validation": 1, "test": 2}
        return sorted({s.split for s in self.studies}, key=lambda s: (order.get(s, 9), s))

    def select(self, split: str | Sequence[str] | None = None) -> list[Instance]:
        """Instances of one split (or several, or all with None)."""
        if split is None:
            return list(self.instances)
        wanted = {
            canonical_split(s, self.name) for s in ([split] if isinstance(split, str) else split)
        }
        return [i for i in self.instances if i.split in wanted]

    def studies_of(self, split: str | None = None) -> list[Study]:
        if split is None:
            return list(self.studies)
        wanted = canonical_split(split, self.name)
        return [s for s in self.studies if s.split == wanted]

    def image_file(self, item: Study | Instance) -> Path:
        """Absolute path of an item's image. Raises DatasetFormatError without an images root."""
        if self.images_root is None:
            raise DatasetFormatError(
                f"{self.name}: no images folder is known for {self.root}; pass images=DIR "
                "(the folder the image paths in the release are relative to)"
            )
        return safe_join(self.images_root, item.image_path, f"{self.name} study {item.study_id}")
