"""The in-memory grounding dataset every reader returns."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ricl.errors import DatasetFormatError
from ricl.types import Instance, Study

__all__ = ["GroundingDataset", "SkippedRecord", "canonical_split", "safe_join"]

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
