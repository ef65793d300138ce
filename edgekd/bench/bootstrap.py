"""Bootstrap confidence interval of the ratio of two latency statistics (latency now / latency in a baseline).

Percentile bootstrap (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13): each of the two samples
is resampled with replacement independently, ``B`` times; the statistic ``median(new*) / median(old*)`` of every
resample forms the bootstrap distribution, whose ``(1 - c) / 2`` and ``(1 + c) / 2`` quantiles bound the interval
at confidence ``c``. This is what criterion.rs does for its change estimates, applied to medians, which ignore the
one-off stalls of a shared machine. :func:`ratio_of_quantiles` does the same for any quantile (a selection that
ranks by p90 compares p90s). Seeded, so the same samples always give the same interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RatioInterval:
    """``ratio = statistic(new) / statistic(old)`` (medians unless said otherwise) with its bootstrap interval
    ``[low, high]`` at ``confidence``."""

    ratio: float
    low: float
    high: float
    confidence: float
    resamples: int

    @property
    def width(self) -> float:
        return self.high - self.low


def _positive_1d(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0 or not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(f"{what}: need a non-empty 1-D sequence of positive, finite latencies")
    return array


def _bootstrap_quantiles(values: np.ndarray, q: float, resamples: int, rng: np.random.Generator, chunk: int
                         ) -> np.ndarray:
    """The ``q`` quantiles of ``resamples`` resamples of ``values``, drawn ``chunk`` at a time to bound memory."""
    out = np.empty(resamples)
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        index = rng.integers(0, values.size, size=(count, values.size))
        out[start:start + count] = np.quantile(values[index], q, axis=1)
    return out


def ratio_of_medians(old: Sequence[float] | np.ndarray, new: Sequence[float] | np.ndarray, *,
                     resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> RatioInterval:
    """The ratio of medians ``new / old`` and its seeded percentile-bootstrap interval.

    Args:
        old: baseline latencies (any unit, positive).
        new: latencies now (same unit).
        resamples: bootstrap resamples ``B`` of each sample.
        confidence: coverage ``c`` of the interval, in (0, 1).
        seed: seed of the resampling (numpy ``default_rng``).
    """
    return ratio_of_quantiles(old, new, 0.5, resamples=resamples, confidence=confidence, seed=seed)


def ratio_of_quantiles(old: Sequence[float] | np.ndarray, new: Sequence[float] | np.ndarray, q: float, *,
                       resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> RatioInterval:
    """The ratio of the ``q`` quantiles ``new / old`` (numpy's linear interpolation, as the bench statistics) and
    its seeded percentile-bootstrap interval; arguments as :func:`ratio_of_medians`, ``q`` in [0, 1]."""
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if not 0 <= q <= 1:
        raise ValueError(f"quantile must lie in [0, 1], got {q}")
    a, b = _positive_1d(old, "old"), _positive_1d(new, "new")
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // max(a.size, b.size))
    ratios = _bootstrap_quantiles(b, q, resamples, rng, chunk) / _bootstrap_quantiles(a, q, resamples, rng, chunk)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(ratios, [alpha, 1 - alpha])
    return RatioInterval(ratio=float(np.quantile(b, q) / np.quantile(a, q)), low=float(low), high=float(high),
                         confidence=confidence, resamples=resamples)
