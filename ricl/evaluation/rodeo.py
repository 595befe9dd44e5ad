"""Adapter to the reference RoDeO implementation (``rodeometric``, imported as ``rodeo``).

RoDeO (Robust Detection Outcome, Meissen et al.) is the box metric the LoFi paper
reports. We call the reference implementation rather than re-implementing it, so that
numbers stay comparable; this module only converts ricl boxes into its input format,
works around one incompatibility with current scikit-learn, and handles its edge cases.

Frame. Boxes go in as ``(x, y, w, h, class_id)`` rows in ricl's normalized frame
(fractions of the original image). Every RoDeO component is invariant to scaling the
x and y axes independently (matching uses generalized IoU, localization divides center
offsets by the gold box's own width/height, shape uses IoU of corner-aligned boxes), so
normalized and pixel coordinates give the same scores; ``tests/test_metrics.py`` checks it.

Classes. For phrase grounding the class of every box (predicted and gold) is the
instance's label group, so matched pairs always agree on the class: RoDeO's
classification component (a clamped MCC over matched boxes) is then 1 on the matched
part, and ``rodeo_classification`` reduces to matched / (matched + over-predicted +
missed) boxes. RoDeO asserts at least two class names; when only one is given we add the
dummy name :data:`DUMMY_CLASS`. Because all boxes of one instance share a class, the
class list's length changes neither the Hungarian matching (the class term is constant
within an instance) nor the MCC of identical one-hot vectors, so the dummy does not
change any score (tested).

Edge cases.
- An instance with no predicted boxes and no gold boxes contributes nothing to RoDeO
  (RoDeO scores boxes, not instances).
- When no instance has both predicted and gold boxes, nothing can be matched: the
  reference warns and returns its worst value 0.0; we return zeros directly, without
  the warning.
- The reference harmonic mean adds ``eps = 1e-6``, so perfect predictions give
  ``rodeo_total == 1.000001`` (and float rounding can put a component a few ulps
  above 1). We report the reference values unchanged.

``import ricl.evaluation.rodeo`` is light: ``rodeo`` (and with it scikit-learn and
scipy) is imported, and the shim applied, the first time RoDeO is computed
(:func:`load_rodeo`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ricl.types import Box

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = [
    "DUMMY_CLASS",
    "RODEO_KEYS",
    "boxes_to_rodeo_array",
    "compute_rodeo",
    "load_rodeo",
]

#: Second class name added when the class list has a single name (RoDeO asserts >= 2).
DUMMY_CLASS = "__ricl_dummy_class__"

#: Our key -> the reference implementation's key.
RODEO_KEYS: dict[str, str] = {
    "rodeo_total": "RoDeO/total",
    "rodeo_localization": "RoDeO/localization",
    "rodeo_shape": "RoDeO/shape_matching",
    "rodeo_classification": "RoDeO/classification",
}

_SHIM_MARK = "_ricl_float64_shim"


def _install_mcc_shim(module: Any) -> None:
    """Make ``module.matthews_corrcoef`` return ``np.float64``. Idempotent.

    Why: rodeometric 0.0.1 calls ``matthews_corrcoef(...).clip(min=0)``; scikit-learn
    >= 1.6 (here 1.9.1) returns a Python ``float``, which has no ``.clip``, so
    ``RoDeO.compute()`` raises ``AttributeError``. Wrapping the result in ``np.float64``
    restores the old return type. Harmless when the function already returns a numpy
    scalar (a fixed rodeometric or an older scikit-learn): the value passes through.
    """
    import numpy as np

    current = module.matthews_corrcoef
    if getattr(current, _SHIM_MARK, False):
        return

    def matthews_corrcoef(*args: Any, **kwargs: Any) -> Any:
        result = current(*args, **kwargs)
        if isinstance(result, np.generic | np.ndarray):
            return result
        return np.float64(result)

    setattr(matthews_corrcoef, _SHIM_MARK, True)
    matthews_corrcoef.__wrapped__ = current  # type: ignore[attr-defined]
    matthews_corrcoef.__doc__ = current.__doc__
    module.matthews_corrcoef = matthews_corrcoef


def load_rodeo() -> type:
    """Import the reference ``rodeo.rodeo`` module, apply the MCC shim, return ``RoDeO``."""
    import rodeo.rodeo as rodeo_module

    _install_mcc_shim(rodeo_module)
    return rodeo_module.RoDeO


def boxes_to_rodeo_array(boxes: Sequence[Box], class_id: int) -> np.ndarray:
    """``(N, 5)`` float array of ``(x, y, w, h, class_id)`` rows; ``(0, 5)`` when empty."""
    import numpy as np

    rows = [
        (b.x_min, b.y_min, b.x_max - b.x_min, b.y_max - b.y_min, float(class_id)) for b in boxes
    ]
    return np.array(rows, dtype=np.float64).reshape(len(rows), 5)


def _class_names(instance_classes: Sequence[str], class_names: Sequence[str] | None) -> list[str]:
    """The class list given to RoDeO: ``class_names`` or the sorted distinct instance
    classes, plus :data:`DUMMY_CLASS` when that leaves a single name."""
    names = (
        sorted({str(c) for c in instance_classes})
        if class_names is None
        else [str(c) for c in class_names]
    )
    if len(set(names)) != len(names):
        raise ValueError(f"compute_rodeo: class names must be unique, got {names!r}")
    if len(names) == 1:
        dummy = DUMMY_CLASS
        while dummy in names:
            dummy += "_"
        names.append(dummy)
    return names


def compute_rodeo(
    preds: Sequence[Sequence[Box]],
    golds: Sequence[Sequence[Box]],
    classes: Sequence[str],
    *,
    class_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """RoDeO over instances: one ``add`` entry per instance.

    Args:
        preds: predicted boxes per instance.
        golds: gold boxes per instance (same length).
        classes: the class of each instance (same length): its label group, used as the
            class of both its predicted and its gold boxes.
        class_names: the full class list (e.g. every label group of the dataset when
            scoring one group); default: the sorted distinct ``classes``. A single name
            gets the dummy second name :data:`DUMMY_CLASS` (it changes no score).

    Returns:
        ``{"rodeo_total", "rodeo_localization", "rodeo_shape", "rodeo_classification"}``
        as Python floats; all 0.0 when no instance has both predicted and gold boxes
        (including when there are no instances).

    Raises:
        ValueError: lengths differ, or an instance class is not in ``class_names``.
    """
    if not len(preds) == len(golds) == len(classes):
        raise ValueError(
            f"compute_rodeo: got {len(preds)} prediction lists, {len(golds)} gold lists and "
            f"{len(classes)} classes; pass one of each per instance"
        )
    zeros = {k: 0.0 for k in RODEO_KEYS}
    names = _class_names(classes, class_names)
    index = {n: i for i, n in enumerate(names)}
    missing = sorted({str(c) for c in classes} - index.keys())
    if missing:
        raise ValueError(
            f"compute_rodeo: instance classes {missing!r} are not in class_names {names!r}"
        )
    # Without a single instance holding both predicted and gold boxes, the Hungarian
    # matching matches nothing and the reference warns and returns its worst value.
    if not any(p and g for p, g in zip(preds, golds)):
        return zeros

    class_ids = [index[str(c)] for c in classes]
    RoDeO = load_rodeo()
    metric = RoDeO(names)
    metric.add(
        [boxes_to_rodeo_array(p, c) for p, c in zip(preds, class_ids)],
        [boxes_to_rodeo_array(g, c) for g, c in zip(golds, class_ids)],
    )
    with warnings.catch_warnings():
        # Both can only fire in degenerate cases the check above already returns for;
        # kept so that users never see them as noise.
        warnings.filterwarnings("ignore", message="Unable to calculate RoDeO")
        warnings.filterwarnings("ignore", message="A single label was found")
        result = metric.compute()
    return {ours: float(result[theirs]) for ours, theirs in RODEO_KEYS.items()}
