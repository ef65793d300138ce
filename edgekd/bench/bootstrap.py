"""Bootstrap confidence interval of the ratio of two medians (latency now / latency in a baseline).

Percentile bootstrap (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13): each of the two samples
is resampled with replacement independently, ``B`` times; the statistic ``median(new*) / median(old*)`` of every
resample forms the bootstrap distribution, whose ``(1 - c) / 2`` and ``(1 + c) / 2`` quantiles bound the interval
at confidence ``c``. This is what criterion.rs does for its change estimates, applied to medians, which ignore the
one-off stalls of a shared machine. Seeded, so the same samples always give the same interval.

:func:`normalised_ratio` divides that ratio by a second one, the machine ratio of a reference workload timed beside
the artifact in both sessions; all four samples are resampled independently, so the interval holds the noise of the
reference's timing too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RatioInterval:
    """``ratio = median(new) / median(old)`` with its bootstrap interval ``[low, high]`` at ``confidence``."""

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


def _bootstrap_medians(values: np.ndarray, resamples: int, rng: np.random.Generator, chunk: int) -> np.ndarray:
    """Medians of ``resamples`` resamples of ``values``, drawn ``chunk`` at a time to bound memory."""
    out = np.empty(resamples)
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        index = rng.integers(0, values.size, size=(count, values.size))
        out[start:start + count] = np.median(values[index], axis=1)
    return out


def _checked(resamples: int, confidence: float) -> None:
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")


def _interval(ratios: np.ndarray, ratio: float, confidence: float, resamples: int) -> RatioInterval:
    alpha = (1 - confidence) / 2
    low, high = np.quantile(ratios, [alpha, 1 - alpha])
    return RatioInterval(ratio=ratio, low=float(low), high=float(high), confidence=confidence, resamples=resamples)


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
    _checked(resamples, confidence)
    a, b = _positive_1d(old, "old"), _positive_1d(new, "new")
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // max(a.size, b.size))
    ratios = _bootstrap_medians(b, resamples, rng, chunk) / _bootstrap_medians(a, resamples, rng, chunk)
    return _interval(ratios, float(np.median(b) / np.median(a)), confidence, resamples)


def normalised_ratio(old: Sequence[float] | np.ndarray, new: Sequence[float] | np.ndarray,
                     old_reference: Sequence[float] | np.ndarray, new_reference: Sequence[float] | np.ndarray, *,
                     resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> RatioInterval:
    """``(median(new) / median(old)) / (median(new_reference) / median(old_reference))`` and its seeded
    percentile-bootstrap interval: the artifact's ratio of medians divided by the machine ratio of the reference
    workload timed beside it (arguments as :func:`ratio_of_medians`)."""
    _checked(resamples, confidence)
    a, b = _positive_1d(old, "old"), _positive_1d(new, "new")
    ra, rb = _positive_1d(old_reference, "old_reference"), _positive_1d(new_reference, "new_reference")
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // max(a.size, b.size, ra.size, rb.size))
    draws = [_bootstrap_medians(v, resamples, rng, chunk) for v in (a, b, ra, rb)]
    ratios = (draws[1] / draws[0]) / (draws[3] / draws[2])
    ratio = float((np.median(b) / np.median(a)) / (np.median(rb) / np.median(ra)))
    return _interval(ratios, ratio, confidence, resamples)
