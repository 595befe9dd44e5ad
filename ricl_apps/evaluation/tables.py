"""Metric tables of a run: per label group, as CSV and markdown.

Columns are the scorer's keys (:func:`ricl.evaluation.metrics.score`); the last row is
the whole split. Markdown values are rounded to 3 decimals, CSV keeps full precision.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

__all__ = ["GROUP_COLUMNS", "group_rows", "markdown_table", "write_group_tables"]

GROUP_COLUMNS = (
    "n_instances",
    "union_iou_micro",
    "acc@0.3",
    "acc@0.5",
    "precision@0.5",
    "recall@0.5",
    "f1@0.5",
    "rodeo_localization",
    "rodeo_total",
    "n_parse_failures",
    "n_errors",
)


def group_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per label group plus ``all``; columns present in ``metrics`` only."""
    cols = [c for c in GROUP_COLUMNS if c in metrics]
    rows = [
        {"label_group": g, **{c: m.get(c) for c in cols}}
        for g, m in metrics.get("per_label_group", {}).items()
    ]
    rows.append({"label_group": "all", **{c: metrics.get(c) for c in cols}})
    return rows


def markdown_table(rows: list[dict[str, Any]], digits: int = 3) -> str:
    """A GitHub markdown table of dict rows (same keys), floats rounded."""
    if not rows:
        return ""
    keys = list(rows[0])

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.{digits}f}"
        return "" if v is None else str(v)

    head = "| " + " | ".join(keys) + " |"
    sep = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(keys))) + "|"
    body = ["| " + " | ".join(cell(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join([head, sep, *body]) + "\n"


def write_group_tables(run_dir: Path, metrics: dict[str, Any]) -> tuple[Path, Path]:
    """``per_label_group.csv`` and ``per_label_group.md`` in ``run_dir``."""
    rows = group_rows(metrics)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    csv_path, md_path = run_dir / "per_label_group.csv", run_dir / "per_label_group.md"
    csv_path.write_text(buf.getvalue(), encoding="utf-8")
    md_path.write_text(markdown_table(rows), encoding="utf-8")
    return csv_path, md_path
