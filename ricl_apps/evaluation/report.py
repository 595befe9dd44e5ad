"""A self-contained HTML report of one evaluation run directory.

:func:`write_report` reads ``run.json``, ``metrics.json`` (optional) and ``predictions.jsonl``
(one row per attempt; the last row of an ``instance_id`` wins) and writes one HTML file with
no external references: images are inlined as base64 JPEG thumbnails, CSS and JS are inline.
Boxes are drawn in an SVG overlay in percent units of the image (ricl's canonical frame).
Model text is untrusted and is always escaped (Jinja2 autoescape).

Union IoU per card follows the scorer (:mod:`ricl.evaluation.metrics`): a row's own
``union_iou`` when it has one, else recomputed from the row's boxes against the gold boxes,
with ``parse_error``/``error`` rows and missing rows scored as empty predictions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ricl.types import Instance

__all__ = ["IOU_BUCKETS", "iou_bucket", "write_report"]

#: IoU filter buckets: ``(attribute value, label)``.
IOU_BUCKETS: tuple[tuple[str, str], ...] = (
    ("zero", "0"),
    ("low", "(0, 0.3)"),
    ("mid", "[0.3, 0.5)"),
    ("high", ">= 0.5"),
)
_TOL = 1e-9  # the scorer's IOU_TOLERANCE
_FAILED = frozenset({"parse_error", "error"})
_STATUS_ORDER = ("ok", "empty", "parse_error", "error", "missing")

# (key, label) of the main metrics table, in order; absent keys are left out.
_MAIN_METRICS: tuple[tuple[str, str], ...] = (
    ("n_instances", "instances scored"),
    ("union_iou_micro", "union IoU (micro)"),
    ("union_iou_macro", "union IoU (macro over label groups)"),
    ("acc@0.1", "acc@0.1"),
    ("acc@0.3", "acc@0.3"),
    ("acc@0.5", "acc@0.5"),
    ("precision@0.3", "precision@0.3"),
    ("recall@0.3", "recall@0.3"),
    ("f1@0.3", "F1@0.3"),
    ("precision@0.5", "precision@0.5"),
    ("recall@0.5", "recall@0.5"),
    ("f1@0.5", "F1@0.5"),
    ("rodeo_total", "RoDeO total"),
    ("rodeo_localization", "RoDeO localization"),
    ("rodeo_shape", "RoDeO shape"),
    ("rodeo_classification", "RoDeO classification"),
    ("n_parse_failures", "parse failures"),
    ("n_truncated", "answers cut at max_tokens"),
    ("n_errors", "errors"),
    ("n_missing_predictions", "missing predictions"),
    ("n_unmatched_predictions", "unmatched prediction rows"),
)
_GROUP_COLUMNS: tuple[tuple[str, str], ...] = (
    ("n_instances", "n"),
    ("union_iou_micro", "union IoU"),
    ("acc@0.1", "acc@0.1"),
    ("acc@0.3", "acc@0.3"),
    ("acc@0.5", "acc@0.5"),
    ("f1@0.3", "F1@0.3"),
    ("f1@0.5", "F1@0.5"),
    ("rodeo_total", "RoDeO"),
    ("n_parse_failures", "parse fail."),
    ("n_errors", "errors"),
    ("n_missing_predictions", "missing"),
)


def iou_bucket(iou: float) -> str:
    """The filter bucket of an IoU: ``zero``, ``low`` (0, 0.3), ``mid`` [0.3, 0.5), ``high``."""
    if iou >= 0.5 - _TOL:
        return "high"
    if iou >= 0.3 - _TOL:
        return "mid"
    return "low" if iou > 0.0 else "zero"


def _ex_side(side: int) -> int:
    return max(64, side // 2)


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}" if math.isfinite(value) else str(value)
    return str(value)


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as fh:
        obj = json.load(fh)
    if not isinstance(obj, dict):
        raise TypeError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _read_rows(path: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """Last row per instance_id, and the number of unreadable lines (e.g. a torn last line)."""
    rows: dict[str, dict[str, Any]] = {}
    n_bad = 0
    if not path.is_file():
        return rows, n_bad
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                n_bad += 1
                continue
            if not isinstance(row, dict) or not isinstance(row.get("instance_id"), str):
                n_bad += 1
                continue
            rows[row["instance_id"]] = row
    return rows, n_bad


def _pct_boxes(values: Any) -> list[dict[str, float]]:
    """Boxes as percent rectangles for drawing (clamped to the image; junk is skipped)."""
    out: list[dict[str, float]] = []
    for b in values or ():
        if hasattr(b, "to_list"):
            b = b.to_list()
        try:
            x0, y0, x1, y1 = (min(max(float(v), 0.0), 1.0) for v in b)
        except (TypeError, ValueError):
            continue
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
            continue
        x0, x1 = sorted((x0, x1))
        y0, y1 = sorted((y0, y1))
        out.append({"x": 100 * x0, "y": 100 * y0, "w": 100 * (x1 - x0), "h": 100 * (y1 - y0)})
    return out


def _valid_boxes(values: Any) -> tuple[Any, ...]:
    from ricl.errors import InvalidBoxError
    from ricl.types import Box

    out = []
    for b in values or ():
        try:
            out.append(Box.from_list(list(b)))
        except (InvalidBoxError, TypeError, ValueError):
            continue
    return tuple(out)


class _Thumbs:
    """Base64 JPEG thumbnails ``{"src", "w", "h"}``, cached per (path, side).

    None when the file is absent or cannot be read (the page shows a placeholder).
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int], dict[str, Any] | None] = {}

    def __call__(self, path: Path | None, side: int) -> dict[str, Any] | None:
        if path is None:
            return None
        key = (str(path), side)
        if key not in self._cache:
            self._cache[key] = self._make(path, side)
        return self._cache[key]

    @staticmethod
    def _make(path: Path, side: int) -> dict[str, Any] | None:
        import base64
        import io

        from ricl.data.images import to_pil_rgb

        if not path.is_file():
            return None
        try:
            img = to_pil_rgb(path)
        except Exception:  # noqa: BLE001 - a broken image becomes a placeholder, not a crash
            return None
        img.thumbnail((side, side))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=82)
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        return {"src": "data:image/jpeg;base64," + data, "w": img.width, "h": img.height}


def _card(
    inst: Instance, row: dict[str, Any] | None, images_root: Path, thumb: _Thumbs, side: int
) -> dict[str, Any]:
    from ricl.boxes.geometry import union_iou

    status = "missing" if row is None else str(row.get("status") or "ok")
    row = row or {}
    pred_lists = row.get("boxes") or []
    if isinstance(row.get("union_iou"), (int, float)) and not isinstance(row["union_iou"], bool):
        iou = float(row["union_iou"])
    else:
        scored = () if status in _FAILED or status == "missing" else _valid_boxes(pred_lists)
        iou = float(union_iou(scored, tuple(inst.boxes)))
    exemplars = _exemplar_cards(row.get("exemplars"), thumb, side)
    first = row.get("first_pass") if isinstance(row.get("first_pass"), dict) else None
    first_card = None
    if first is not None:
        first_card = {
            "how": f"{first.get('backend')}, {first.get('selector')}, k={first.get('k')}",
            "n_boxes": len(first.get("boxes") or []),
            "second_selector": first.get("second_selector"),
            "raw": first.get("raw"),
            "exemplars": _exemplar_cards(first.get("exemplars"), thumb, side),
        }
    timings = row.get("timings") if isinstance(row.get("timings"), dict) else {}
    img = thumb(images_root / inst.image_path, side)
    # displayed at the longer side ``side`` even when the image is smaller (phantoms)
    disp_w = round(side * img["w"] / max(img["w"], img["h"])) if img else side
    return {
        "id": inst.instance_id,
        "image_id": inst.image_id,
        "phrase": inst.phrase,
        "group": inst.label_group if inst.label_group is not None else "unknown",
        "status": status,
        "iou": iou,
        "bucket": iou_bucket(iou),
        "img": img,
        "disp_w": disp_w,
        "aspect": (f"{inst.image_size[0]} / {inst.image_size[1]}" if inst.image_size else "1 / 1"),
        "gold": _pct_boxes(inst.boxes),
        "pred": _pct_boxes(pred_lists),
        "n_gold": len(inst.boxes),
        "n_pred": len(pred_lists),
        "raw": row.get("raw"),
        "error": row.get("error"),
        "n_repaired": row.get("n_repaired"),
        "n_dropped": row.get("n_dropped"),
        "model": row.get("model"),
        "timing": _timing_text(timings),
        "exemplars": exemplars,
        "first_pass": first_card,
    }


def _exemplar_cards(rows: Any, thumb: _Thumbs, side: int) -> list[dict[str, Any]]:
    """The exemplar thumbnails of a row's ``exemplars`` list (malformed entries skipped)."""
    out = []
    for ex in rows or []:
        if not isinstance(ex, dict):
            continue
        f = ex.get("image_file")
        out.append(
            {
                "img": thumb(Path(f), _ex_side(side)) if isinstance(f, str) else None,
                "boxes": _pct_boxes(ex.get("boxes")),
                "phrase": ex.get("phrase") or "",
                "label": ex.get("study_id") or ex.get("image_id") or ex.get("exemplar_id"),
                "score": ex.get("score"),
                "similarity": ex.get("similarity"),
            }
        )
    return out


def duration_text(ms: float) -> str:
    """A duration given in milliseconds (the unit of every ``timings`` entry), written in
    the unit a reader expects: ``"0.42 ms"``, ``"37.1 ms"``, ``"6.66 s"``."""
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms"


def _timing_text(timings: dict[str, Any]) -> str | None:
    """``"total 37.1 ms (retrieve 1.20 ms, generate 35.0 ms)"``; None without a total."""
    total = timings.get("total")
    if not isinstance(total, (int, float)):
        return None
    steps = [f"{k} {duration_text(v)}" for k, v in timings.items()
             if k != "total" and isinstance(v, (int, float))]  # fmt: skip
    return f"total {duration_text(total)}" + (f" ({', '.join(steps)})" if steps else "")


def write_report(
    run_dir: Path,
    instances: Sequence[Instance],
    images_root: Path,
    *,
    out: Path | None = None,
    max_instances: int | None = None,
    thumb_side: int = 256,
) -> Path:
    """Write the run's self-contained HTML report; returns its path.

    ``out`` defaults to ``run_dir/report.html`` (written atomically). ``max_instances`` keeps
    the first instances only (the page says so); metrics are shown as the scorer wrote them.

    Raises:
        FileNotFoundError: ``run_dir`` has no ``run.json``.
        TypeError: ``run.json`` or ``metrics.json`` is not a JSON object.
        ValueError: ``thumb_side`` or ``max_instances`` is not positive.
    """
    import jinja2

    run_dir, images_root = Path(run_dir), Path(images_root)
    if thumb_side < 16:
        raise ValueError(f"thumb_side must be >= 16 pixels, got {thumb_side}")
    if max_instances is not None and max_instances < 0:
        raise ValueError(f"max_instances must be >= 0, got {max_instances}")
    run = _read_json(run_dir / "run.json")
    if run is None:
        raise FileNotFoundError(f"{run_dir / 'run.json'} not found; is {run_dir} a run directory?")
    metrics = _read_json(run_dir / "metrics.json")
    rows, n_bad = _read_rows(run_dir / "predictions.jsonl")

    shown = list(instances) if max_instances is None else list(instances)[:max_instances]
    thumb = _Thumbs()
    cards = [_card(i, rows.get(i.instance_id), images_root, thumb, thumb_side) for i in shown]
    known = {i.instance_id for i in instances}
    models = sorted({str(r["model"]) for r in rows.values() if r.get("model")})
    agent = run.get("agent") if isinstance(run.get("agent"), dict) else {}

    main_rows, group_cols, group_rows = [], [], []
    if metrics is not None:
        main_rows = [(label, _fmt(metrics[k])) for k, label in _MAIN_METRICS if k in metrics]
        per_group = metrics.get("per_label_group") or {}
        group_cols = [c for c in _GROUP_COLUMNS if any(c[0] in g for g in per_group.values())]
        group_rows = [(g, [_fmt(d.get(k)) for k, _ in group_cols]) for g, d in per_group.items()]

    present = {c["status"] for c in cards}
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = _fmt
    env.filters["json"] = lambda v: json.dumps(v, ensure_ascii=False, sort_keys=True)
    html = env.get_template("report.html.j2").render(
        run=run,
        run_id=str(run.get("run_id") or run_dir.name),
        agent=agent,
        models=models,
        metrics_rows=main_rows,
        has_metrics=metrics is not None,
        group_cols=group_cols,
        group_rows=group_rows,
        cards=cards,
        n_total=len(instances),
        truncated=len(shown) < len(instances),
        n_rows=len(rows),
        n_bad_lines=n_bad,
        n_unknown_rows=sum(k not in known for k in rows),
        groups=sorted({c["group"] for c in cards}),
        statuses=[s for s in _STATUS_ORDER if s in present] + sorted(present - set(_STATUS_ORDER)),
        buckets=IOU_BUCKETS,
        ex_px=_ex_side(thumb_side),
    )

    from ricl.atomic import atomic_write_text

    return atomic_write_text(Path(out) if out is not None else run_dir / "report.html", html)
