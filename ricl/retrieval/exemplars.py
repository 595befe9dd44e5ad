"""Exemplars: what the retriever returns and the index stores (as JSON lines, never pickle).

An exemplar is one study of the gallery split (one frontal image) with its POSITIVE
findings: each finding's phrase, gold boxes (canonical :class:`ricl.types.Box`),
labels, locations and label group. Negative sentences ("No pneumothorax.") are not
kept: they ground nothing and the prompt shows phrase-box pairs.

Which studies become exemplars (decided in :func:`exemplar_studies`): every study of the
split with at least one positive finding. Normal studies are left out by default: they
demonstrate no phrase-box pair, and with k prompt slots per query an image-similarity
search would otherwise fill many of them with normal look-alikes. ``include_normal=True``
keeps them (recorded in the manifest), e.g. to show the model "no box" answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ricl.retrieval.errors import IndexFormatError
from ricl.types import Box, Study, boxes_from_lists, boxes_to_lists

__all__ = [
    "Exemplar",
    "ExemplarFinding",
    "exemplar_studies",
    "read_exemplars",
    "region_table",
    "write_exemplars",
]


@dataclass(frozen=True, slots=True)
class ExemplarFinding:
    """One positive finding of an exemplar. ``index`` is its position in the study's
    ``findings`` (stable id); ``boxes`` may be empty (a positive finding without grounding)."""

    index: int
    phrase: str
    boxes: tuple[Box, ...] = ()
    labels: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()
    label_group: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "phrase": self.phrase,
            "boxes": boxes_to_lists(self.boxes),
            "labels": list(self.labels),
            "locations": list(self.locations),
            "label_group": self.label_group,
        }


@dataclass(frozen=True, slots=True)
class Exemplar:
    """An annotated gallery image, as stored in the index and returned by the retriever.

    ``exemplar_id``: its row in the global index. ``image_path`` is relative to the data
    set's images root. ``score``: the similarity to the query (inner product of
    normalized embeddings) for similarity selectors, the label overlap for
    ``label-oracle``, None for ``random``. ``matched_region``: for location queries,
    ``(finding position in findings, box position)`` of the region that matched.
    """

    exemplar_id: int
    study_id: str
    image_id: str
    patient_id: str
    split: str
    image_path: str
    findings: tuple[ExemplarFinding, ...] = ()
    image_size: tuple[int, int] | None = None
    score: float | None = None
    matched_region: tuple[int, int] | None = None

    @property
    def labels(self) -> frozenset[str]:
        """Every label of every finding."""
        return frozenset(lab for f in self.findings for lab in f.labels)

    @property
    def boxes(self) -> tuple[Box, ...]:
        """Every gold box, finding by finding (the region index's order)."""
        return tuple(b for f in self.findings for b in f.boxes)

    def with_score(
        self, score: float | None, matched_region: tuple[int, int] | None = None
    ) -> Exemplar:
        return replace(self, score=score, matched_region=matched_region)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (boxes as ``[x_min, y_min, x_max, y_max]`` lists)."""
        return {
            "exemplar_id": self.exemplar_id,
            "study_id": self.study_id,
            "image_id": self.image_id,
            "patient_id": self.patient_id,
            "split": self.split,
            "image_path": self.image_path,
            "image_size": list(self.image_size) if self.image_size else None,
            "findings": [f.to_dict() for f in self.findings],
            "score": self.score,
            "matched_region": list(self.matched_region) if self.matched_region else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Exemplar:
        """Inverse of :meth:`to_dict`. Raises KeyError/TypeError/InvalidBoxError on bad input."""
        findings = tuple(
            ExemplarFinding(
                index=int(f["index"]),
                phrase=str(f["phrase"]),
                boxes=boxes_from_lists(f["boxes"]),
                labels=tuple(f["labels"]),
                locations=tuple(f["locations"]),
                label_group=f.get("label_group"),
            )
            for f in d["findings"]
        )
        size = d.get("image_size")
        match = d.get("matched_region")
        return cls(
            exemplar_id=int(d["exemplar_id"]),
            study_id=str(d["study_id"]),
            image_id=str(d["image_id"]),
            patient_id=str(d["patient_id"]),
            split=str(d["split"]),
            image_path=str(d["image_path"]),
            findings=findings,
            image_size=(int(size[0]), int(size[1])) if size else None,
            score=d.get("score"),
            matched_region=(int(match[0]), int(match[1])) if match else None,
        )

    @classmethod
    def from_study(cls, exemplar_id: int, study: Study) -> Exemplar:
        """The exemplar of a study: its positive findings only."""
        findings = tuple(
            ExemplarFinding(f.index, f.sentence_en, f.boxes, f.labels, f.locations, f.label_group)
            for f in study.findings
            if f.abnormal
        )
        return cls(
            exemplar_id,
            study.study_id,
            study.image_id,
            study.patient_id,
            study.split,
            study.image_path,
            findings,
            study.image_size,
        )


def exemplar_studies(studies: Iterable[Study], include_normal: bool = False) -> list[Study]:
    """The studies that become exemplars, in order (see the module docstring)."""
    return [s for s in studies if include_normal or not s.is_normal]


def region_table(exemplars: Sequence[Exemplar]) -> list[tuple[int, int, int]]:
    """One ``(exemplar_id, finding position, box position)`` per gold box, in index order."""
    return [
        (e.exemplar_id, fi, bi)
        for e in exemplars
        for fi, f in enumerate(e.findings)
        for bi in range(len(f.boxes))
    ]


def write_exemplars(path: Path, exemplars: Iterable[Exemplar]) -> int:
    """Write one JSON object per line (without scores); returns the count."""
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for e in exemplars:
            record = e.to_dict()
            del record["score"], record["matched_region"]
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n


def _iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if line.strip():
                yield line_no, line


def read_exemplars(path: Path, first_id: int = 0) -> list[Exemplar]:
    """Read ``exemplars.jsonl``; row i must carry ``exemplar_id == first_id + i`` (an index
    starts at 0, an index shard at the first row of its slice).

    Raises:
        IndexFormatError: naming the file and line of a record that does not parse.
    """
    out: list[Exemplar] = []
    for line_no, line in _iter_lines(path):
        try:
            e = Exemplar.from_dict(json.loads(line))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise IndexFormatError(
                f"{path} line {line_no}: not an exemplar record ({exc}); rebuild the index "
                "with `ricl index build`"
            ) from None
        if e.exemplar_id != first_id + len(out):
            raise IndexFormatError(
                f"{path} line {line_no}: exemplar_id {e.exemplar_id}, expected "
                f"{first_id + len(out)} "
                "(records must be in index order); rebuild the index"
            )
        out.append(e)
    return out
