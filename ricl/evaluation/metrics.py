"""The one scorer of ricl: phrase-grounding metrics over instances and predictions.

Gold boxes are ``Instance.boxes`` (the primary reader; ``extra_boxes`` are not used).
All geometry is exact (:mod:`ricl.boxes.geometry`), in the canonical normalized frame.

Conventions (each one tested in ``tests/test_metrics.py``):

- **Keying.** A prediction belongs to the instance with the same ``(image_id, phrase)``
  (``phrase`` is the instance's phrase, PadChest-GR's ``sentence_en``, compared exactly).
  When several gold instances share a key (the same sentence twice in a study), prediction
  rows with that key are given to them in order: the k-th row to the k-th instance in the
  order of ``instances``. Rows left over (a key no instance has, or more rows than
  instances for a key) are not scored and are counted in ``n_unmatched_predictions``.
  Predictions may also be a mapping: keyed by ``(image_id, phrase)`` tuples, or by
  ``instance_id`` strings (which address one instance exactly).
- **Missing and failed predictions.** An instance without a prediction row is scored as
  an empty prediction (``n_missing_predictions``). Rows with status ``parse_error``
  (``n_parse_failures``) or ``error`` (``n_errors``) are scored as empty predictions too,
  whatever boxes they carry. These counts cover rows matched to an instance.
- **Union IoU.** Exact IoU between the union of predicted and the union of gold boxes;
  both empty = 1.0 (correctly found nothing), exactly one empty = 0.0.
  ``union_iou_micro`` is the mean over instances; ``union_iou_macro`` the mean over label
  groups of the per-group means (``label_group=None`` -> group ``"unknown"``).
- **acc@t** is the share of instances with union IoU >= t.
- **precision/recall/f1@t** pool boxes over instances: per instance a greedy one-to-one
  matching by descending IoU (:func:`ricl.boxes.geometry.greedy_match`); a pair counts when
  its IoU >= t. precision = matches / predicted boxes, recall = matches / gold boxes,
  f1 = 2PR / (P + R). 0/0: with no predicted and no gold boxes anywhere, precision =
  recall = f1 = 1.0 (nothing to find, nothing claimed, like empty-vs-empty union IoU);
  otherwise an empty denominator gives 0.0 (no predicted boxes -> precision 0.0; no gold
  boxes -> recall 0.0) and P + R = 0 gives f1 0.0.
- **IoU >= t** is tested with a tolerance of ``1e-9`` (``IOU_TOLERANCE``) so that a box
  built to have IoU exactly t is not lost to float rounding.
- **RoDeO** (:mod:`ricl.evaluation.rodeo`): the instance's label group is the class of its
  predicted and gold boxes; the dataset's full sorted list of groups is the class list,
  also when scoring one group. Instances with neither predicted nor gold boxes do not
  contribute; with no instance holding both, the RoDeO values are 0.0.

``score`` returns a plain JSON-able dict (Python floats and ints, deterministic key
order). Importing this module imports no numpy, scikit-learn or rodeo; RoDeO loads them
when it is computed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ricl.boxes.geometry import greedy_match, union_iou
from ricl.types import Box, Instance, Prediction

__all__ = [
    "DEFAULT_THRESHOLDS_ACC",
    "DEFAULT_THRESHOLDS_F1",
    "IOU_TOLERANCE",
    "UNKNOWN_GROUP",
    "InstanceScore",
    "align_predictions",
    "label_group_of",
    "prf1",
    "score",
    "score_instance",
    "scored_boxes",
]

DEFAULT_THRESHOLDS_ACC: tuple[float, ...] = (0.1, 0.3, 0.5)
DEFAULT_THRESHOLDS_F1: tuple[float, ...] = (0.3, 0.5)
#: Group of instances whose ``label_group`` is None.
UNKNOWN_GROUP = "unknown"
#: ``iou >= t`` is evaluated as ``iou >= t - IOU_TOLERANCE``.
IOU_TOLERANCE = 1e-9

_FAILED_STATUSES = frozenset({"parse_error", "error"})


# ---------------------------------------------------------------------------- per instance
@dataclass(frozen=True, slots=True)
class InstanceScore:
    """Scores of one instance.

    ``matches`` holds ``(threshold, n_matched_pairs)`` per F1 threshold. ``status`` is the
    prediction row's status, or None when the row is missing.
    """

    instance_id: str
    label_group: str
    union_iou: float
    n_pred: int
    n_gold: int
    matches: tuple[tuple[float, int], ...]
    status: str | None

    @property
    def missing(self) -> bool:
        return self.status is None

    def n_matches(self, threshold: float) -> int:
        for t, n in self.matches:
            if t == threshold:
                return n
        raise KeyError(
            f"no matches computed at threshold {threshold!r}; have {[t for t, _ in self.matches]}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "label_group": self.label_group,
            "union_iou": self.union_iou,
            "n_pred": self.n_pred,
            "n_gold": self.n_gold,
            **{f"matches@{_fmt(t)}": n for t, n in self.matches},
            "status": self.status,
        }


def label_group_of(instance: Instance) -> str:
    """The instance's label group, ``"unknown"`` when it has none."""
    return instance.label_group if instance.label_group is not None else UNKNOWN_GROUP


def scored_boxes(prediction: Prediction | None) -> tuple[Box, ...]:
    """The boxes that count: none for a missing row or a ``parse_error``/``error`` row."""
    if prediction is None or prediction.status in _FAILED_STATUSES:
        return ()
    return tuple(prediction.boxes)


def score_instance(
    instance: Instance,
    prediction: Prediction | None,
    *,
    thresholds_f1: Sequence[float] = DEFAULT_THRESHOLDS_F1,
) -> InstanceScore:
    """Score one instance against its prediction (None = missing, scored as empty)."""
    thresholds = _check_thresholds(thresholds_f1, "thresholds_f1")
    pred = scored_boxes(prediction)
    gold = tuple(instance.boxes)
    matches = tuple(
        (t, len(greedy_match(pred, gold, max(0.0, t - IOU_TOLERANCE))) if pred and gold else 0)
        for t in thresholds
    )
    return InstanceScore(
        instance_id=instance.instance_id,
        label_group=label_group_of(instance),
        union_iou=float(union_iou(pred, gold)),
        n_pred=len(pred),
        n_gold=len(gold),
        matches=matches,
        status=None if prediction is None else prediction.status,
    )


# ---------------------------------------------------------------------------- alignment
def align_predictions(
    instances: Sequence[Instance],
    predictions: Mapping[Any, Prediction] | Iterable[Prediction],
) -> tuple[list[Prediction | None], int]:
    """Give each instance its prediction row (see the module doc for the keying rules).

    Returns ``(per_instance, n_unmatched)``: ``per_instance[i]`` is the row of
    ``instances[i]`` or None, ``n_unmatched`` the number of rows given to no instance.
    """
    queues: dict[tuple[str, str], list[int]] = {}
    by_id: dict[str, int] = {}
    for i, inst in enumerate(instances):
        queues.setdefault((inst.image_id, inst.phrase), []).append(i)
        by_id.setdefault(inst.instance_id, i)
    cursor = {k: 0 for k in queues}
    out: list[Prediction | None] = [None] * len(instances)
    n_unmatched = 0

    if isinstance(predictions, Mapping):
        rows: Iterable[tuple[Any, Prediction]] = predictions.items()
    else:
        rows = (((p.image_id, p.phrase), p) for p in predictions)

    for key, pred in rows:
        if not isinstance(pred, Prediction):
            raise TypeError(
                f"expected Prediction objects, got {type(pred).__name__} for key {key!r}"
            )
        if isinstance(key, str):  # instance_id
            i = by_id.get(key)
            if i is None or out[i] is not None:
                n_unmatched += 1
                continue
            out[i] = pred
            continue
        if not (isinstance(key, tuple) and len(key) == 2):
            raise TypeError(
                f"prediction keys must be (image_id, phrase) tuples or instance_id strings, got {key!r}"
            )
        key = (key[0], key[1])
        queue = queues.get(key)
        if queue is None:
            n_unmatched += 1
            continue
        # next instance of this key that has no row yet (instance_id keys may have filled some)
        c = cursor[key]
        while c < len(queue) and out[queue[c]] is not None:
            c += 1
        if c == len(queue):
            cursor[key] = c
            n_unmatched += 1
            continue
        out[queue[c]] = pred
        cursor[key] = c + 1
    return out, n_unmatched


# ---------------------------------------------------------------------------- aggregation
def prf1(n_matches: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    """Precision, recall, F1 from pooled counts, with the 0/0 conventions of the module doc."""
    if n_pred == 0 and n_gold == 0:
        return 1.0, 1.0, 1.0
    precision = n_matches / n_pred if n_pred else 0.0
    recall = n_matches / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return float(precision), float(recall), float(f1)


def _mean(values: Sequence[float]) -> float:
    return float(math.fsum(values) / len(values))


def _fmt(t: float) -> str:
    return f"{t:g}"


def _check_thresholds(thresholds: Sequence[float], name: str) -> tuple[float, ...]:
    out: list[float] = []
    for t in thresholds:
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 < t <= 1.0:
            raise ValueError(f"{name}: thresholds must be numbers in (0, 1], got {t!r}")
        if float(t) not in out:
            out.append(float(t))
    return tuple(out)


def _aggregate(
    scores: Sequence[InstanceScore],
    thresholds_acc: tuple[float, ...],
    thresholds_f1: tuple[float, ...],
) -> dict[str, Any]:
    ious = [s.union_iou for s in scores]
    groups: dict[str, list[float]] = {}
    for s in scores:
        groups.setdefault(s.label_group, []).append(s.union_iou)
    out: dict[str, Any] = {
        "n_instances": len(scores),
        "n_missing_predictions": sum(s.missing for s in scores),
        "n_parse_failures": sum(s.status == "parse_error" for s in scores),
        "n_errors": sum(s.status == "error" for s in scores),
        "union_iou_micro": _mean(ious),
        "union_iou_macro": _mean([_mean(groups[g]) for g in sorted(groups)]),
    }
    for t in thresholds_acc:
        out[f"acc@{_fmt(t)}"] = float(sum(iou >= t - IOU_TOLERANCE for iou in ious) / len(ious))
    n_pred = sum(s.n_pred for s in scores)
    n_gold = sum(s.n_gold for s in scores)
    for t in thresholds_f1:
        p, r, f = prf1(sum(s.n_matches(t) for s in scores), n_pred, n_gold)
        out[f"precision@{_fmt(t)}"] = p
        out[f"recall@{_fmt(t)}"] = r
        out[f"f1@{_fmt(t)}"] = f
    return out


def score(
    instances: Sequence[Instance],
    predictions: Mapping[Any, Prediction] | Sequence[Prediction],
    *,
    thresholds_acc: Sequence[float] = DEFAULT_THRESHOLDS_ACC,
    thresholds_f1: Sequence[float] = DEFAULT_THRESHOLDS_F1,
    rodeo: bool = True,
) -> dict[str, Any]:
    """Score predictions against gold instances.

    Returns, in this order: ``n_instances``, ``n_missing_predictions``,
    ``n_parse_failures``, ``n_errors``, ``union_iou_micro``, ``union_iou_macro``,
    ``acc@t`` per ``thresholds_acc``, ``precision@t``/``recall@t``/``f1@t`` per
    ``thresholds_f1``, ``rodeo_total``/``rodeo_localization``/``rodeo_shape``/
    ``rodeo_classification`` (only when ``rodeo``), ``n_unmatched_predictions``, and
    ``per_label_group``: ``{group: the same keys for that group's instances}`` (groups
    sorted; no ``n_unmatched_predictions`` there; a group's macro IoU equals its micro).
    Threshold keys print the threshold with ``:g`` (``acc@0.5``).

    Raises:
        ValueError: no instances, or a threshold outside (0, 1].
    """
    if len(instances) == 0:
        raise ValueError("score: no instances to score")
    t_acc = _check_thresholds(thresholds_acc, "thresholds_acc")
    t_f1 = _check_thresholds(thresholds_f1, "thresholds_f1")

    aligned, n_unmatched = align_predictions(instances, predictions)
    scores = [score_instance(inst, p, thresholds_f1=t_f1) for inst, p in zip(instances, aligned)]
    group_names = sorted({s.label_group for s in scores})

    def block(idx: Sequence[int]) -> dict[str, Any]:
        d = _aggregate([scores[i] for i in idx], t_acc, t_f1)
        if rodeo:
            from ricl.evaluation.rodeo import compute_rodeo

            d.update(
                compute_rodeo(
                    [scored_boxes(aligned[i]) for i in idx],
                    [instances[i].boxes for i in idx],
                    [scores[i].label_group for i in idx],
                    class_names=group_names,
                )
            )
        return d

    out = block(range(len(instances)))
    out["n_unmatched_predictions"] = n_unmatched
    out["per_label_group"] = {
        g: block([i for i, s in enumerate(scores) if s.label_group == g]) for g in group_names
    }
    return out
