"""Score a predictions file against a dataset split: the Python twin of ``ricl score``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ricl.errors import DatasetFormatError

__all__ = ["score_predictions_file"]


def score_predictions_file(
    dataset: str,
    root: str | Path,
    predictions: str | Path,
    *,
    split: str = "test",
    images: str | Path | None = None,
    keep_unboxed: bool = False,
    rodeo: bool = True,
) -> dict[str, Any]:
    """Load ``dataset`` from ``root``, read the JSON-lines ``predictions`` and score ``split``.

    Returns the scorer's JSON-able dict (see :func:`ricl.evaluation.metrics.score`) with
    ``dataset``, ``split`` and ``predictions`` added. Gold instances without a prediction
    row count as empty predictions (``n_missing_predictions``).

    Raises:
        DatasetFormatError: the predictions file is missing or malformed (file and line
            named), the dataset is malformed, or the split has no instances.
    """
    from ricl.data.registry import load_dataset
    from ricl.evaluation.metrics import score
    from ricl.evaluation.predictions import read_predictions

    path = Path(predictions)
    if not path.is_file():
        raise DatasetFormatError(f"{path}: predictions file not found")
    # scoring needs no pixels: skip reading image headers
    ds = load_dataset(dataset, root, images, keep_unboxed=keep_unboxed, read_image_sizes=False)
    instances = ds.select(split)
    if not instances:
        raise DatasetFormatError(
            f"{ds.root}: split {split!r} has no grounding instances (splits: {', '.join(ds.splits)})"
        )
    metrics = score(instances, read_predictions(path), rodeo=rodeo)
    return {"dataset": dataset, "split": split, "predictions": str(path), **metrics}
