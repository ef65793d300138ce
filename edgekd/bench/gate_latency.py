"""The gate's latency verdict: a ratio measured so that the machine's speed between sessions cannot fail it.

Latencies from two sessions are never compared raw: the same artifacts on the same machine differ by the machine's
state from one session to the next, by a factor far beyond any sampling interval. A verdict rests on one of:

- :class:`SessionTiming` (``edgekd check --baseline-run OLD_RUN``): the baseline's artifact and the candidate timed
  interleaved in this process; the median over rounds of the ratio of their blocks' fastest calls and its bootstrap
  interval over rounds (:func:`edgekd.bench.bootstrap.paired_ratio`);
- :class:`ReferenceTiming` (only the baseline's numbers): the candidate timed beside the machine reference now, the
  baseline's artifact beside it when the baseline was made; each block's fastest call divided by that of the
  reference's block of its round, then the sessions compared, with a bootstrap interval over rounds
  (:func:`edgekd.bench.bootstrap.normalised_ratio`). The report also shows the raw ratio (of all calls' medians)
  and the machine ratio (the reference's), whose quotient the judged ratio approximates.

Either way the verdict is a regression only when the whole interval lies above ``1 + latency_tol``, improved only
when it lies below ``1 - latency_tol``. Without either, the latency is reported and not judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgekd.bench.bootstrap import RatioInterval, normalised_ratio, paired_ratio, ratio_of_medians

METRIC = "latency p50 (ms)"


@dataclass(frozen=True)
class SessionTiming:
    """The baseline's artifact (``old_ms``) and the candidate (``new_ms``) timed interleaved in one session, in
    rounds of ``block`` calls each."""

    old_ms: list[float]
    new_ms: list[float]
    block: int


@dataclass(frozen=True)
class ReferenceTiming:
    """The candidate (``new_ms``) and the machine reference (``reference_ms``) timed interleaved in this session, in
    rounds of ``block`` calls each."""

    new_ms: list[float]
    reference_ms: list[float]
    block: int


@dataclass(frozen=True)
class Unjudged:
    """Why a latency cannot be judged in this check (shown in the row)."""

    reason: str


Timing = SessionTiming | ReferenceTiming | Unjudged


def _verdict(ci: RatioInterval, latency_pct: float) -> str:
    if ci.low > 1 + latency_pct / 100:
        return "regression"
    return "improved" if ci.high < 1 - latency_pct / 100 else "ok"


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def latency_judgement(old: dict[str, Any], timing: Timing, *, latency_pct: float, resamples: int,
                      confidence: float, seed: int) -> dict[str, Any]:
    """The figures and verdict of one artifact's latency: ``old_ms``/``new_ms`` (medians), ``raw``, ``machine``
    (None within a session), ``ratio``, ``low``, ``high``, ``runs`` and ``verdict``; for :class:`Unjudged` the
    verdict ``not judged`` and its ``reason``. ``old`` is the baseline's artifact entry."""
    options: dict[str, Any] = {"resamples": resamples, "confidence": confidence, "seed": seed}
    if isinstance(timing, Unjudged):
        return {"verdict": "not judged", "reason": timing.reason}
    if isinstance(timing, SessionTiming):
        ci = paired_ratio(timing.old_ms, timing.new_ms, block=timing.block, **options)
        figures = {"mode": "same session", "old_ms": _median(timing.old_ms), "new_ms": _median(timing.new_ms),
                   "raw": ci.ratio, "machine": None, "runs": [len(timing.old_ms), len(timing.new_ms)]}
    else:
        session = old["session"]
        if session["block"] != timing.block:
            return {"verdict": "not judged", "reason": f"baseline timed in blocks of {session['block']} calls, this "
                    f"check in blocks of {timing.block}"}
        raw = ratio_of_medians(session["samples_ms"], timing.new_ms, **options)
        machine = ratio_of_medians(session["reference_ms"], timing.reference_ms, **options)
        ci = normalised_ratio(session["samples_ms"], timing.new_ms, session["reference_ms"], timing.reference_ms,
                              block=timing.block, **options)
        figures = {"mode": "machine reference", "old_ms": _median(session["samples_ms"]),
                   "new_ms": _median(timing.new_ms), "raw": raw.ratio, "raw_low": raw.low, "raw_high": raw.high,
                   "machine": machine.ratio,
                   "runs": [len(session["samples_ms"]), len(timing.new_ms)]}
    return {**figures, "ratio": ci.ratio, "low": ci.low, "high": ci.high, "confidence": ci.confidence,
            "verdict": _verdict(ci, latency_pct)}


def describe(judgement: dict[str, Any]) -> str:
    """The ``change`` cell of a latency row: raw ratio, machine ratio and the judged ratio with its interval."""
    if judgement["verdict"] == "not judged":
        return str(judgement["reason"])
    interval = (f"×{judgement['ratio']:.3f} [{judgement['low']:.3f}, {judgement['high']:.3f}] "
                f"({100 * judgement['confidence']:.0f} % CI, {judgement['runs'][0]} vs {judgement['runs'][1]} runs)")
    if judgement["machine"] is None:
        return f"{interval}, both timed in this session"
    return f"raw ×{judgement['raw']:.3f}, machine ×{judgement['machine']:.3f}, normalised {interval}"
