"""Score a predictions file against a dataset split: the Python twin of ``ricl score``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ricl.errors import DatasetFormatError

if TYPE_CHECKING:
    from ricl.data.spec import SplitSpec

__all__ = ["score_predictions_file"]


def score_predictions_file(
    data: SplitSpec, predictions: str | Path, *, rodeo: bool = True
) -> dict[str, Any]:
    """Read the JSON-lines ``predictions`` and score them on the instances of ``data``
    (a :class:`~ricl.data.spec.SplitSpec`: release, reader options, split, limit).

    Returns the scorer's JSON-able dict (see :func:`ricl.evaluation.metrics.score`) with
    ``dataset``, ``split`` and ``predictions`` added. Gold instances without a prediction
    row count as empty predictions (``n_missing_predictions``).

    Raises:
        DatasetFormatError: the predictions file is missing or malformed (file and line
            named), the dataset is malformed, or the split has no instances.
    """
    from ricl.evaluation.metrics import score
    from ricl.evaluation.predictions import read_predictions

    path = Path(predictions)
    if not path.is_file():
        raise DatasetFormatError(f"{path}: predictions file not found")
    # scoring needs no pixels: skip reading image headers
    instances = data.instances(data.open(read_image_sizes=False))
    metrics = score(instances, read_predictions(path), rodeo=rodeo)
    return {"dataset": data.name, "split": data.split, "predictions": str(path), **metrics}
