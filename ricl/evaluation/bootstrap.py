"""Paired bootstrap confidence intervals: is arm A better than arm B on the same instances?

Two prompt strategies answer the same queries, so their per-instance scores are paired;
resampling instances (not the two arms separately) keeps the pairing and gives the
interval of the difference of the means, the number that says whether a gain is real.
The resampling is :func:`scipy.stats.bootstrap` (``paired=True``, BCa by default).

>>> ci = paired_bootstrap_ci([0.5, 0.6, 0.7, 0.4], [0.1, 0.3, 0.2, 0.2], n_resamples=999)
>>> round(ci.difference, 3), ci.low > 0
(0.35, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["PairedCI", "paired_bootstrap_ci"]


@dataclass(frozen=True)
class PairedCI:
    """``difference`` = mean(a) - mean(b) over the ``n`` paired instances; ``[low, high]``
    its ``confidence`` interval. ``excludes_zero``: the interval lies on one side of 0."""

    difference: float
    low: float
    high: float
    n: int
    confidence: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def text(self, digits: int = 3) -> str:
        """``+0.051 [+0.020, +0.083]``."""
        f = f"{{:+.{digits}f}}"
        return f"{f.format(self.difference)} [{f.format(self.low)}, {f.format(self.high)}]"


def paired_bootstrap_ci(
    a: Sequence[float],
    b: Sequence[float],
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    method: Literal["BCa", "percentile", "basic"] = "BCa",
) -> PairedCI:
    """The bootstrap CI of ``mean(a) - mean(b)``, ``a[i]`` and ``b[i]`` scoring the same
    instance. Seeded (the same inputs give the same interval).

    Raises ValueError when the lengths differ or fewer than 2 pairs are given. When every
    difference is the same (no spread) the interval is that value, width zero.
    """
    import numpy as np
    from scipy import stats

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired scores need two 1-D sequences of one length, got {x.shape} "
                         f"and {y.shape}")  # fmt: skip
    if len(x) < 2:
        raise ValueError(f"a bootstrap needs at least 2 paired instances, got {len(x)}")
    diff = float(np.mean(x - y))
    if np.ptp(x - y) == 0:
        return PairedCI(diff, diff, diff, len(x), confidence)

    def statistic(u, v, axis=-1):
        return np.mean(u - v, axis=axis)

    res = stats.bootstrap((x, y), statistic, paired=True, vectorized=True,
                          n_resamples=n_resamples, confidence_level=confidence,
                          method=method, rng=np.random.default_rng(seed))  # fmt: skip
    low, high = res.confidence_interval
    return PairedCI(diff, float(low), float(high), len(x), confidence)
