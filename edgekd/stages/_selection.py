"""Which artifact to deploy: the device's budgets, then the user's objective (recipe `select:`).

Every accuracy read here is the artifact's *validation* accuracy in its own runtime (metric ``val_accuracy``, on
the split carved from train); test accuracy (metric ``accuracy``) is reported, never used to choose.

An artifact *meets the budgets* when its file size, latency (at ``budgets.latency_stat``) and validation accuracy
are all within the device's limits; a metric that a budget needs but that was not measured counts as a miss. A
failed artifact (``status == "failed"``) is never a candidate. Among the artifacts that meet the budgets:

- ``accuracy``: the highest validation accuracy wins; ties go to the lower latency, then the smaller file;
- ``latency`` (default) / ``size``: the *reference* is the most accurate artifact (as above); the *contenders* are
  those within ``max_accuracy_drop`` of it; the fastest (resp. smallest) contender wins, ties by the other metric,
  then by higher accuracy.

Latency is compared with its noise (objective ``latency``): a contender whose latency samples (bench metric
``samples_ms``) give a seeded 95 % bootstrap interval of ``its statistic / the fastest one's`` that contains 1 is
*within noise* of the fastest (:func:`edgekd.bench.bootstrap.ratio_of_quantiles`, at the budget's statistic). Among
the fastest and those within its noise, the highest validation accuracy wins, then the smaller file, then the lower
point latency. Without samples for both, the point statistics decide.

The result carries one sentence saying why the winner won (the rule, the runner-up, the margins and any tie within
noise), and, when nothing meets the budgets, the closest artifact with each budget it misses and by how much.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from edgekd.bench.bootstrap import ratio_of_quantiles
from edgekd.config import Budgets, SelectConfig
from edgekd.pipeline.artifacts import Artifact

#: accuracies closer than this are equal (floating-point noise of a mean over validation images)
ACCURACY_EPS = 1e-9
#: the split whose accuracy makes every choice (the manifest's ``selected_by``)
SELECTED_BY = "validation"
#: coverage and resamples of the bootstrap interval that decides whether two latencies differ beyond noise
NOISE_CONFIDENCE, NOISE_RESAMPLES = 0.95, 2000
#: the quantile each latency statistic is (``mean`` is compared as the mean)
_QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}


@dataclass(frozen=True)
class BudgetMiss:
    """One budget an artifact does not meet; ``value`` is None when the metric was not measured."""

    budget: str
    value: float | None
    limit: float
    text: str
    unit: str

    @property
    def excess(self) -> float:
        """How far past the limit, relative to it (infinite when unmeasured)."""
        if self.value is None:
            return math.inf
        over = self.limit - self.value if self.budget == "min_accuracy" else self.value - self.limit
        return over / self.limit

    def by(self) -> str:
        """``by 1.234 ms (6.2 % over)``, or ``not measured``."""
        if self.value is None:
            return "not measured"
        gap = abs(self.value - self.limit)
        amount = (f"{100 * gap:.2f} points" if self.budget == "min_accuracy" else f"{gap:,.0f} MACs"
                  if self.budget == "max_macs" else f"{gap:.3f} {self.unit}")
        return f"by {amount} ({100 * self.excess:.1f} % {'under' if self.budget == 'min_accuracy' else 'over'})"


def latency_of(artifact: Artifact, stat: str) -> float | None:
    """The artifact's measured latency at ``stat`` (ms), or None."""
    return artifact.metrics.get("latency_ms", {}).get(stat)


def accuracy_of(artifact: Artifact) -> float | None:
    """The validation accuracy of ``artifact`` in its own runtime (what every choice reads), or None."""
    return artifact.metrics.get("val_accuracy")


def test_accuracy_of(artifact: Artifact) -> float | None:
    """The test accuracy of ``artifact`` in its own runtime (reported beside the choice, never used for it)."""
    return artifact.metrics.get("accuracy")


def budget_misses(artifact: Artifact, budgets: Budgets) -> list[BudgetMiss]:
    """Every budget ``artifact`` does not meet (empty: it meets them all)."""
    misses = []
    size_mb = artifact.bytes / 1e6
    if budgets.max_size_mb is not None and size_mb > budgets.max_size_mb:
        misses.append(BudgetMiss("max_size_mb", size_mb, budgets.max_size_mb,
                                 f"size {size_mb:.3f} MB > {budgets.max_size_mb} MB", "MB"))
    latency = latency_of(artifact, budgets.latency_stat)
    if budgets.max_latency_ms is not None:
        if latency is None:
            misses.append(BudgetMiss("max_latency_ms", None, budgets.max_latency_ms, "latency not measured", "ms"))
        elif latency > budgets.max_latency_ms:
            misses.append(BudgetMiss("max_latency_ms", latency, budgets.max_latency_ms,
                                     f"latency {budgets.latency_stat} {latency:.3f} ms > {budgets.max_latency_ms} ms",
                                     "ms"))
    macs = artifact.info.get("macs")
    if budgets.max_macs is not None:
        if macs is None:
            misses.append(BudgetMiss("max_macs", None, budgets.max_macs, "MACs not counted", "MACs"))
        elif macs > budgets.max_macs:
            misses.append(BudgetMiss("max_macs", macs, budgets.max_macs, f"MACs {macs:,} > {budgets.max_macs:,}",
                                     "MACs"))
    accuracy = accuracy_of(artifact)
    if budgets.min_accuracy is not None:
        if accuracy is None:
            misses.append(BudgetMiss("min_accuracy", None, budgets.min_accuracy, "validation accuracy not measured",
                                     ""))
        elif accuracy < budgets.min_accuracy:
            misses.append(BudgetMiss("min_accuracy", accuracy, budgets.min_accuracy,
                                     f"validation accuracy {accuracy:.4f} < {budgets.min_accuracy}", ""))
    return misses


def budget_failures(artifact: Artifact, budgets: Budgets) -> list[str]:
    """Why ``artifact`` does not meet ``budgets``, one phrase per budget (empty: it does)."""
    return [m.text for m in budget_misses(artifact, budgets)]


def rank_key(artifact: Artifact, budgets: Budgets) -> tuple[float, float, int]:
    """Objective ``accuracy``: higher validation accuracy first, then lower latency, then fewer bytes."""
    latency = latency_of(artifact, budgets.latency_stat)
    return (-(accuracy_of(artifact) or 0.0), math.inf if latency is None else latency, artifact.bytes)


def _objective_key(objective: str, stat: str) -> Any:
    def key(a: Artifact) -> tuple[float, float, float]:
        latency = latency_of(a, stat)
        lat = math.inf if latency is None else latency
        acc = -(accuracy_of(a) or 0.0)
        return (lat, a.bytes, acc) if objective == "latency" else (a.bytes, lat, acc)

    return key


@dataclass
class Selection:
    """The outcome of :func:`select_artifact`."""

    selected: Artifact | None
    meets_budgets: bool
    reason: str
    candidates: list[str] = field(default_factory=list)
    passing: list[str] = field(default_factory=list)
    contenders: list[str] = field(default_factory=list)
    runner_up: str | None = None
    closest: dict[str, Any] | None = None
    noise: dict[str, Any] | None = None

    def record(self, objective: SelectConfig) -> dict[str, Any]:
        """The manifest's ``selection`` entry."""
        return {"objective": objective.objective, "max_accuracy_drop": objective.max_accuracy_drop,
                "selected_by": SELECTED_BY, "selected": self.selected.name if self.selected else None,
                "meets_budgets": self.meets_budgets, "reason": self.reason, "runner_up": self.runner_up,
                "contenders": self.contenders, "passing": self.passing, "candidates": self.candidates,
                "closest": self.closest, "noise": self.noise}


def _fmt_lat(a: Artifact, stat: str) -> str:
    value = latency_of(a, stat)
    return "unmeasured latency" if value is None else f"{value:.3f} ms ({stat})"


def _margins(winner: Artifact, other: Artifact, stat: str) -> str:
    """``0.036 vs 0.105 ms p90 (2.92× faster), accuracy 0.8747 vs 0.8777 (-0.30 points), 0.030 vs 0.082 MB``."""
    parts = []
    lw, lo = latency_of(winner, stat), latency_of(other, stat)
    if lw is not None and lo is not None:
        speed = f"{lo / lw:.2f}× faster" if lw <= lo else f"{lw / lo:.2f}× slower"
        parts.append(f"latency {lw:.3f} vs {lo:.3f} ms {stat} ({speed})")
    aw, ao = accuracy_of(winner), accuracy_of(other)
    if aw is not None and ao is not None:
        parts.append(f"validation accuracy {aw:.4f} vs {ao:.4f} ({100 * (aw - ao):+.2f} points)")
    parts.append(f"size {winner.bytes / 1e6:.3f} vs {other.bytes / 1e6:.3f} MB")
    return ", ".join(parts)


def latency_samples(artifact: Artifact) -> list[float] | None:
    """The artifact's latency samples (ms, bench metric ``samples_ms``), or None when it has too few to resample."""
    samples = artifact.metrics.get("samples_ms")
    return list(samples) if samples and len(samples) >= 2 else None


def noise_interval(fastest: Artifact, other: Artifact, stat: str) -> dict[str, Any] | None:
    """The seeded bootstrap interval of ``other``'s latency statistic over ``fastest``'s, and whether it contains 1
    (``within_noise``); None without samples of both. ``mean`` is compared by its medians (a quantile is needed)."""
    a, b = latency_samples(fastest), latency_samples(other)
    if a is None or b is None:
        return None
    q = _QUANTILES.get(stat, 0.5)
    interval = ratio_of_quantiles(a, b, q, resamples=NOISE_RESAMPLES, confidence=NOISE_CONFIDENCE, seed=0)
    return {"artifact": other.name, "statistic": stat if stat in _QUANTILES else "p50", "ratio": interval.ratio,
            "low": interval.low, "high": interval.high, "within_noise": interval.low <= 1.0 <= interval.high}


def _noise_tie(contenders: list[Artifact], stat: str) -> tuple[list[Artifact], dict[str, Any]]:
    """``contenders`` (fastest first) re-ordered by the noise rule: the fastest and those within its noise by
    validation accuracy, then size, then point latency, ahead of the rest in their order; with the comparisons."""
    fastest = contenders[0]
    comparisons = [c for c in (noise_interval(fastest, other, stat) for other in contenders[1:]) if c is not None]
    tied_names = {c["artifact"] for c in comparisons if c["within_noise"]}
    tied = [fastest, *(a for a in contenders[1:] if a.name in tied_names)]
    tied.sort(key=lambda a: (-(accuracy_of(a) or 0.0), a.bytes, latency_of(a, stat) or math.inf))
    rest = [a for a in contenders if a not in tied]
    record = {"fastest": fastest.name, "confidence": NOISE_CONFIDENCE, "resamples": NOISE_RESAMPLES,
              "within_noise": [a.name for a in tied if a is not fastest], "comparisons": comparisons,
              "unsampled": [a.name for a in contenders if latency_samples(a) is None]}
    return tied + rest, record


def _noise_text(winner: Artifact, noise: dict[str, Any]) -> str:
    """The reason's clause on latency noise (empty when nothing was within noise of the fastest)."""
    if not noise["within_noise"]:
        return ""
    names = ", ".join(noise["within_noise"])
    intervals = "; ".join(f"{c['artifact']} {c['statistic']} ratio {c['ratio']:.3f} [{c['low']:.3f}, "
                          f"{c['high']:.3f}]" for c in noise["comparisons"] if c["within_noise"])
    verdict = (f"{winner.name} wins the tie" if winner.name != noise["fastest"]
               else f"the fastest, {winner.name}, also wins the tie")
    return (f"; within noise: {names} against the fastest {noise['fastest']} (the {100 * noise['confidence']:.0f} % "
            f"bootstrap interval of the latency ratio contains 1: {intervals}), so the tie goes to validation "
            f"accuracy, then size: {verdict}")


def _closest(ok: list[Artifact], budgets: Budgets, device: str) -> dict[str, Any] | None:
    """The artifact nearest to meeting the budgets (smallest total relative excess) and the message of exit 1."""
    if not ok:
        return None
    scored = [(sum(m.excess for m in budget_misses(a, budgets)), a) for a in ok]
    _, nearest = min(scored, key=lambda s: (s[0], s[1].name))
    misses = budget_misses(nearest, budgets)
    detail = "; ".join(f"{m.budget} {m.by()} ({m.text})" for m in misses)
    return {"artifact": nearest.name, "misses": [{"budget": m.budget, "value": m.value, "limit": m.limit,
                                                  "text": m.text} for m in misses],
            "message": f"no artifact meets the budgets of device {device}; closest: {nearest.name} misses {detail}"}


def select_artifact(candidates: list[Artifact], budgets: Budgets, objective: SelectConfig, *, device: str,
                    enforce: bool = True) -> Selection:
    """Choose among ``candidates`` (artifacts whose runtime the device offers) by the budgets and the objective.

    With ``enforce=False`` (smoke runs) and no artifact meeting the budgets, the objective is applied to every
    non-failed candidate instead, and the selection says so (``meets_budgets`` stays False).
    """
    ok = [a for a in candidates if a.status != "failed"]
    passing = [a for a in ok if not budget_misses(a, budgets)]
    base = Selection(selected=None, meets_budgets=bool(passing), reason="", candidates=[a.name for a in candidates],
                     passing=[a.name for a in passing])
    failed = len(candidates) - len(ok)
    failed_note = f" ({failed} failed artifact(s) excluded)" if failed else ""
    pool = passing
    prefix = ""
    if not passing:
        base.closest = _closest(ok, budgets, device)
        if enforce or not ok:
            base.reason = (base.closest["message"] if base.closest
                           else f"no candidate artifact for device {device}{failed_note}")
            return base
        pool = ok
        prefix = "smoke run, budgets not enforced: no artifact meets them, so the objective ranks every artifact; "
    stat = budgets.latency_stat
    pool_text = (f"the {len(pool)} artifacts meeting the budgets" if pool is passing
                 else f"all {len(pool)} artifacts") + failed_note
    ranked = sorted(pool, key=lambda a: rank_key(a, budgets))
    reference = ranked[0]
    if objective.objective == "accuracy":
        winner, contenders = reference, ranked
        rule = f"objective accuracy: the most accurate on validation of {pool_text}"
    else:
        floor = (accuracy_of(reference) or 0.0) - objective.max_accuracy_drop - ACCURACY_EPS
        contenders = sorted((a for a in pool if (accuracy_of(a) or 0.0) >= floor),
                            key=_objective_key(objective.objective, stat))
        if objective.objective == "latency" and len(contenders) > 1:
            contenders, base.noise = _noise_tie(contenders, stat)
        winner = contenders[0]
        what = "fastest" if objective.objective == "latency" else "smallest"
        rule = (f"objective {objective.objective}: the {what} of {pool_text} within "
                f"{100 * objective.max_accuracy_drop:.2f} points of the most accurate one on validation "
                f"({reference.name}, validation accuracy {accuracy_of(reference) or 0.0:.4f})")
    others = [a for a in contenders if a is not winner]
    base.selected, base.contenders = winner, [a.name for a in contenders]
    if others:
        base.runner_up = others[0].name
        reason = f"{rule}; {winner.name} beats the runner-up {others[0].name}: {_margins(winner, others[0], stat)}"
        if base.noise is not None:
            reason += _noise_text(winner, base.noise)
    else:
        reason = f"{rule}; {winner.name} is the only contender ({_fmt_lat(winner, stat)})"
        outside = [a for a in ranked if a is not winner]
        if outside:
            fastest = min(outside, key=_objective_key(objective.objective, stat))
            reason += (f"; the best excluded by the accuracy drop is {fastest.name}: "
                       f"{_margins(winner, fastest, stat)}")
    base.reason = prefix + reason + "."
    return base
