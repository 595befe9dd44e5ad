"""Counts per split of a grounding dataset (``ricl data stats``)."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from ricl.data.dataset import GroundingDataset

__all__ = ["dataset_stats"]


def dataset_stats(ds: GroundingDataset) -> dict[str, Any]:
    """Per split (and ``all``): studies, patients, findings, positive findings, grounding
    instances, boxes (gold boxes of the instances), and per label group instances/boxes.

    Returns a JSON-able dict ``{"dataset", "splits": {split: {...}}, "skipped"}``.
    """
    out: dict[str, Any] = {}
    for split in [*ds.splits, "all"]:
        studies = ds.studies_of(None if split == "all" else split)
        instances = ds.select(None if split == "all" else split)
        groups: dict[str, Counter[str]] = defaultdict(Counter)
        for inst in instances:
            g = groups[inst.label_group or "unknown"]
            g["instances"] += 1
            g["boxes"] += len(inst.boxes)
        out[split] = {
            "studies": len(studies),
            "patients": len({s.patient_id for s in studies}),
            "normal_studies": sum(s.is_normal for s in studies),
            "findings": sum(len(s.findings) for s in studies),
            "positive_findings": sum(f.abnormal for s in studies for f in s.findings),
            "grounding_instances": len(instances),
            "boxes": sum(len(i.boxes) for i in instances),
            "per_label_group": {k: dict(sorted(v.items())) for k, v in sorted(groups.items())},
        }
    return {
        "dataset": ds.name,
        "root": str(ds.root),
        "splits": out,
        "skipped": [{"where": s.where, "reason": s.reason} for s in ds.skipped],
    }
