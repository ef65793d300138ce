"""Bootstrap confidence interval of the ratio of two latency statistics (latency now / latency in a baseline).

Percentile bootstrap (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13): each of the two samples
is resampled with replacement independently, ``B`` times; the statistic ``median(new*) / median(old*)`` of every
resample forms the bootstrap distribution, whose ``(1 - c) / 2`` and ``(1 + c) / 2`` quantiles bound the interval
at confidence ``c``. This is what criterion.rs does for its change estimates, applied to medians, which ignore the
one-off stalls of a shared machine. :func:`ratio_of_quantiles` does the same for any quantile (a selection that
ranks by p90 compares p90s). Seeded, so the same samples always give the same interval.

:func:`paired_ratio` and :func:`normalised_ratio` are for series timed in interleaved blocks
(:func:`edgekd.bench.latency.interleaved_calls`): calls of one block share the machine's state of that moment, so
they are not independent, and the block, not the call, is resampled (the highest level of variation, as Kalibera &
Jones, *Rigorous Benchmarking in Reasonable Time*, ISMM 2013, advise). Each block is summarised by its fastest call:
a busy machine only ever adds time to a call, so the minimum is the estimate least moved by other processes and still
moved by the machine's clock and by the model (Chen & Revels, *Robust benchmarking in noisy environments*, 2016,
the estimator of Julia's BenchmarkTools);
:func:`paired_ratio` takes the ratio of the two series' blocks of the same round (timed next to each other), and
:func:`normalised_ratio` divides an artifact's block by the machine reference's block of the same round in each
session, then compares the sessions.
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
    return ratio_of_quantiles(old, new, 0.5, resamples=resamples, confidence=confidence, seed=seed)


def block_minima(values: Sequence[float] | np.ndarray, block: int, what: str = "series") -> np.ndarray:
    """The minimum of each consecutive block of ``block`` values (a series of whole blocks, in order)."""
    array = _positive_1d(values, what)
    if block < 1 or array.size % block:
        raise ValueError(f"{what}: {array.size} values are not whole blocks of {block}")
    return np.min(array.reshape(-1, block), axis=1)


def paired_ratio(old: Sequence[float] | np.ndarray, new: Sequence[float] | np.ndarray, *, block: int,
                 resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> RatioInterval:
    """The median over rounds of ``min(new block) / min(old block)`` and its percentile-bootstrap interval,
    rounds resampled with replacement; ``old`` and ``new`` hold the same number of rounds of ``block`` calls."""
    _checked(resamples, confidence)
    a, b = block_minima(old, block, "old"), block_minima(new, block, "new")
    if a.size != b.size:
        raise ValueError(f"old has {a.size} rounds, new {b.size}: paired series need as many")
    ratios = b / a
    rng = np.random.default_rng(seed)
    return _interval(_bootstrap_quantiles(ratios, 0.5, resamples, rng, max(1, 2_000_000 // ratios.size)),
                     float(np.median(ratios)), confidence, resamples)


def _quotients(values: Sequence[float] | np.ndarray, reference: Sequence[float] | np.ndarray, block: int,
               what: str) -> np.ndarray:
    art, ref = block_minima(values, block, what), block_minima(reference, block, f"{what}_reference")
    if art.size != ref.size:
        raise ValueError(f"{what}: {art.size} rounds of the artifact, {ref.size} of its reference; need as many")
    return art / ref


def normalised_ratio(old: Sequence[float] | np.ndarray, new: Sequence[float] | np.ndarray,
                     old_reference: Sequence[float] | np.ndarray, new_reference: Sequence[float] | np.ndarray, *,
                     block: int, resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> RatioInterval:
    """``median(q_new) / median(q_old)`` with ``q = min(artifact block) / min(reference block)`` per round of
    each session, and its percentile-bootstrap interval, each session's rounds resampled independently: the
    artifact's change with the machine's change between the sessions divided out."""
    _checked(resamples, confidence)
    qa, qb = _quotients(old, old_reference, block, "old"), _quotients(new, new_reference, block, "new")
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // max(qa.size, qb.size))
    ratios = (_bootstrap_quantiles(qb, 0.5, resamples, rng, chunk)
              / _bootstrap_quantiles(qa, 0.5, resamples, rng, chunk))
    return _interval(ratios, float(np.median(qb) / np.median(qa)), confidence, resamples)


def ratio_of_quantiles(old: Sequence[float] | np.ndarray, new: Sequence[float] | np.ndarray, q: float, *,
                       resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> RatioInterval:
    """The ratio of the ``q`` quantiles ``new / old`` (numpy's linear interpolation, as the bench statistics) and
    its seeded percentile-bootstrap interval; arguments as :func:`ratio_of_medians`, ``q`` in [0, 1]."""
    _checked(resamples, confidence)
    if not 0 <= q <= 1:
        raise ValueError(f"quantile must lie in [0, 1], got {q}")
    a, b = _positive_1d(old, "old"), _positive_1d(new, "new")
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // max(a.size, b.size))
    ratios = _bootstrap_quantiles(b, q, resamples, rng, chunk) / _bootstrap_quantiles(a, q, resamples, rng, chunk)
    return _interval(ratios, float(np.quantile(b, q) / np.quantile(a, q)), confidence, resamples)
