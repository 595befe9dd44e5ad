"""Predictions files: JSON lines, one prediction per line.

Each line is an object::

    {"image_id": "...", "phrase": "<sentence_en>", "boxes": [[x_min, y_min, x_max, y_max], ...],
     "scores": [...], "status": "ok", "raw": "..."}

``image_id``, ``phrase`` and ``boxes`` are required; boxes are in ricl's canonical frame
(normalized to the original image, ``0 <= min < max <= 1``). ``scores`` is optional (one
per box), ``status`` one of ``ok``/``empty``/``parse_error``/``error`` (default ``ok``, or
``empty`` when ``boxes`` is ``[]``; ``empty`` with boxes is an error), ``raw`` an optional
string (the model's answer). Other keys are allowed and ignored (evaluation runs log more).
Blank lines are skipped.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, get_args

from ricl.errors import DatasetFormatError, InvalidBoxError
from ricl.types import Box, Prediction, PredictionStatus

__all__ = [
    "STATUSES",
    "prediction_from_dict",
    "prediction_to_dict",
    "read_predictions",
    "write_predictions",
]

STATUSES: tuple[str, ...] = tuple(get_args(PredictionStatus))


def prediction_to_dict(prediction: Prediction) -> dict[str, Any]:
    """One JSON-able object; inverse of :func:`prediction_from_dict`.

    ``status`` is always written; ``scores`` only when non-empty, ``raw`` only when set.
    """
    d: dict[str, Any] = {
        "image_id": prediction.image_id,
        "phrase": prediction.phrase,
        "boxes": [b.to_list() for b in prediction.boxes],
    }
    if prediction.scores:
        d["scores"] = [float(s) for s in prediction.scores]
    d["status"] = prediction.status
    if prediction.raw is not None:
        d["raw"] = prediction.raw
    return d


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def prediction_from_dict(obj: Mapping[str, Any]) -> Prediction:
    """Build a :class:`Prediction` from one parsed line.

    Raises:
        DatasetFormatError: a required key is missing or a value is malformed; the message
            says what to fix (callers add the file and line).
    """
    if not isinstance(obj, Mapping):
        raise DatasetFormatError(
            f"expected a JSON object per line, got {type(obj).__name__}; write one "
            '{"image_id": ..., "phrase": ..., "boxes": [...]} object per line'
        )
    for key in ("image_id", "phrase", "boxes"):
        if key not in obj:
            raise DatasetFormatError(
                f"missing key {key!r}; every prediction needs 'image_id', 'phrase' and 'boxes'"
            )
    image_id, phrase, raw_boxes = obj["image_id"], obj["phrase"], obj["boxes"]
    if not isinstance(image_id, str):
        raise DatasetFormatError(f"'image_id' must be a string, got {image_id!r}")
    if not isinstance(phrase, str):
        raise DatasetFormatError(
            f"'phrase' must be a string (the instance's sentence_en), got {phrase!r}"
        )
    if not isinstance(raw_boxes, list):
        raise DatasetFormatError(
            f"'boxes' must be a list of [x_min, y_min, x_max, y_max] lists, got {raw_boxes!r}"
        )
    boxes: list[Box] = []
    for k, b in enumerate(raw_boxes):
        if not isinstance(b, list) or len(b) != 4 or not all(_is_number(v) for v in b):
            raise DatasetFormatError(
                f"box {k} is {b!r}; each box must be a list of 4 numbers [x_min, y_min, x_max, y_max]"
            )
        try:
            boxes.append(Box.from_list(b))
        except InvalidBoxError as e:
            raise DatasetFormatError(
                f"box {k} {b!r} is invalid: {e}; boxes must be normalized to the original image "
                "with 0 <= min < max <= 1 (clip model outputs with Box.clip before writing)"
            ) from None

    raw_scores = obj.get("scores")
    if raw_scores is None:
        scores: tuple[float, ...] = ()
    else:
        if not isinstance(raw_scores, list) or not all(
            _is_number(s) and math.isfinite(s) for s in raw_scores
        ):
            raise DatasetFormatError(
                f"'scores' must be a list of finite numbers, got {raw_scores!r}"
            )
        if raw_scores and len(raw_scores) != len(boxes):
            raise DatasetFormatError(
                f"'scores' has {len(raw_scores)} values for {len(boxes)} boxes; "
                "give one score per box or leave 'scores' out"
            )
        scores = tuple(float(s) for s in raw_scores)

    status = obj.get("status")
    if status is None:
        status = "ok" if boxes else "empty"
    elif status not in STATUSES:
        raise DatasetFormatError(f"unknown status {status!r}; use one of {list(STATUSES)}")
    if status == "empty" and boxes:
        raise DatasetFormatError(
            f"status 'empty' with {len(boxes)} boxes; use status 'ok' or write \"boxes\": []"
        )

    raw = obj.get("raw")
    if raw is not None and not isinstance(raw, str):
        raise DatasetFormatError(f"'raw' must be a string or null, got {type(raw).__name__}")
    return Prediction(
        image_id=image_id, phrase=phrase, boxes=tuple(boxes), scores=scores, status=status, raw=raw
    )


def read_predictions(path: str | os.PathLike[str]) -> list[Prediction]:
    """Read a predictions file (JSON lines), in file order.

    Raises:
        DatasetFormatError: naming the file, the 1-based line number and the fix, for the
            first malformed line.
        FileNotFoundError: the file does not exist.
    """
    path = Path(path)
    out: list[Prediction] = []
    with path.open("r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetFormatError(
                    f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno}); "
                    "write one JSON object per line"
                ) from None
            try:
                out.append(prediction_from_dict(obj))
            except DatasetFormatError as e:
                raise DatasetFormatError(f"{path}:{lineno}: {e}") from None
    return out


def write_predictions(
    path: str | os.PathLike[str], predictions: Iterable[Prediction], append: bool = False
) -> None:
    """Write predictions as JSON lines (UTF-8, one object per line), flushing each line.

    ``append=True`` adds to an existing file (resumable runs); otherwise the file is
    replaced. Parent directories are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a" if append else "w", encoding="utf-8") as f:
        for p in predictions:
            f.write(json.dumps(prediction_to_dict(p), ensure_ascii=False, allow_nan=False) + "\n")
            f.flush()
