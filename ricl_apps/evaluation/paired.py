"""Per arm of an experiment, the paired bootstrap CI of its difference to a baseline arm.

The per-instance score is the scorer's union IoU (:func:`ricl.evaluation.metrics.
score_instance`: failed answers count as empty), so the mean difference is the difference
of ``union_iou_micro``. Seeds of one arm are averaged per instance before pairing; an arm
is paired with the baseline's cells at the same non-seed grid point, or, when the baseline
does not vary along the grid (``zero-shot`` with ``agent.k: 0``), with all its cells.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from typing import Any

from ricl.errors import RiclError

__all__ = ["CI_PREFIXES", "add_paired_cis", "instance_ious"]

# prefixes of the keys :func:`add_paired_cis` adds to a row (not grid values)
CI_PREFIXES = ("vs_", "diff_vs_", "ci_low", "ci_high", "n_paired")

Cell = tuple[str, dict[str, Any], Any]  # (arm, grid point, EvalConfig)


def instance_ious(config: Any, cache: dict[str, Any] | None = None) -> dict[str, float]:
    """``{instance_id: union IoU}`` of a finished run (its last row per instance)."""
    from ricl.evaluation.metrics import score_instance
    from ricl_apps.evaluation.runner import (
        PREDICTIONS,
        last_rows,
        load_instances,
        read_rows,
        row_prediction,
    )

    key = json.dumps(config.dataset.model_dump(mode="json"), sort_keys=True)
    if cache is None or key not in cache:
        instances = load_instances(config)[1]
        if cache is not None:
            cache[key] = instances
    else:
        instances = cache[key]
    rows = last_rows(read_rows(config.run_dir / PREDICTIONS))
    return {
        i.instance_id: score_instance(
            i, row_prediction(rows[i.instance_id]) if i.instance_id in rows else None
        ).union_iou
        for i in instances
    }


def _mean_over_seeds(runs: list[dict[str, float]]) -> dict[str, float]:
    common = set.intersection(*(set(r) for r in runs))
    return {i: statistics.fmean(r[i] for r in runs) for i in common}


def add_paired_cis(
    rows: list[dict[str, Any]],
    cells: list[Cell],
    baseline: str,
    seed_key: str | None,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    primary: bool = True,
) -> None:
    """Add to each aggregated row ``vs_<baseline>`` (text), ``diff_vs_<baseline>``,
    ``ci_low_vs_<baseline>``, ``ci_high_vs_<baseline>`` and ``n_paired_vs_<baseline>``;
    for the ``primary`` baseline (an experiment's first) also ``diff_vs_baseline``,
    ``ci_low``, ``ci_high`` and ``n_paired``. Raises RiclError for an unknown baseline arm
    or a pairing with fewer than 2 shared instances."""
    from ricl.evaluation.bootstrap import paired_bootstrap_ci

    if baseline not in {arm for arm, _, _ in cells}:
        raise RiclError(f"baseline arm {baseline!r} is not an arm of the experiment")
    cache: dict[str, Any] = {}
    scores: dict[str, list[dict[str, float]]] = defaultdict(list)
    base_all: list[dict[str, float]] = []
    for arm, point, config in cells:
        shown = {k: v for k, v in point.items() if k != seed_key}
        s = instance_ious(config, cache)
        scores[json.dumps([arm, shown], sort_keys=True)].append(s)
        if arm == baseline:
            base_all.append(s)
    for row in rows:
        shown = {k: row[k] for k in row if k not in ("arm", "n_seeds")
                 and not k.endswith(("_mean", "_std")) and not k.startswith(CI_PREFIXES)}  # fmt: skip
        mine = _mean_over_seeds(scores[json.dumps([row["arm"], shown], sort_keys=True)])
        base_runs = scores.get(json.dumps([baseline, shown], sort_keys=True)) or base_all
        base = _mean_over_seeds(base_runs)
        ids = sorted(set(mine) & set(base))
        if len(ids) < 2:
            raise RiclError(f"arm {row['arm']!r} shares {len(ids)} instances with baseline "
                            f"{baseline!r}: a paired CI needs the same instances")  # fmt: skip
        ci = paired_bootstrap_ci([mine[i] for i in ids], [base[i] for i in ids],
                                 n_resamples=n_resamples, confidence=confidence, seed=seed)  # fmt: skip
        row.update({f"vs_{baseline}": ci.text(), f"diff_vs_{baseline}": ci.difference,
                    f"ci_low_vs_{baseline}": ci.low, f"ci_high_vs_{baseline}": ci.high,
                    f"n_paired_vs_{baseline}": ci.n})  # fmt: skip
        if primary:
            row.update({"diff_vs_baseline": ci.difference, "ci_low": ci.low,
                        "ci_high": ci.high, "n_paired": ci.n})  # fmt: skip
