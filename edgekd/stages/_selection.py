"""Which artifact to deploy: the device's budgets, then the user's objective (recipe `select:`).

An artifact *meets the budgets* when its file size, latency (at ``budgets.latency_stat``) and test accuracy are all
within the device's limits; a metric that a budget needs but that was not measured counts as a miss. A failed
artifact (``status == "failed"``) is never a candidate. Among the artifacts that meet the budgets:

- ``accuracy``: the highest test accuracy wins; ties go to the lower latency, then the smaller file;
- ``latency`` (default) / ``size``: the *reference* is the most accurate artifact (as above); the *contenders* are
  those within ``max_accuracy_drop`` of it; the fastest (resp. smallest) contender wins, ties by the other metric,
  then by higher accuracy.

The result carries one sentence saying why the winner won (the rule, the runner-up and the margins), and, when
nothing meets the budgets, the closest artifact with each budget it misses and by how much.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from edgekd.config import Budgets, SelectConfig
from edgekd.pipeline.artifacts import Artifact

#: accuracies closer than this are equal (floating-point noise of a mean over test images)
ACCURACY_EPS = 1e-9


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
            misses.append(BudgetMiss("min_accuracy", None, budgets.min_accuracy, "accuracy not measured", ""))
        elif accuracy < budgets.min_accuracy:
            misses.append(BudgetMiss("min_accuracy", accuracy, budgets.min_accuracy,
                                     f"accuracy {accuracy:.4f} < {budgets.min_accuracy}", ""))
    return misses


def budget_failures(artifact: Artifact, budgets: Budgets) -> list[str]:
    """Why ``artifact`` does not meet ``budgets``, one phrase per budget (empty: it does)."""
    return [m.text for m in budget_misses(artifact, budgets)]


def rank_key(artifact: Artifact, budgets: Budgets) -> tuple[float, float, int]:
    """Objective ``accuracy``: higher accuracy first, then lower latency, then fewer bytes."""
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

    def record(self, objective: SelectConfig) -> dict[str, Any]:
        """The manifest's ``selection`` entry."""
        return {"objective": objective.objective, "max_accuracy_drop": objective.max_accuracy_drop,
                "selected": self.selected.name if self.selected else None, "meets_budgets": self.meets_budgets,
                "reason": self.reason, "runner_up": self.runner_up, "contenders": self.contenders,
                "passing": self.passing, "candidates": self.candidates, "closest": self.closest}


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
        parts.append(f"accuracy {aw:.4f} vs {ao:.4f} ({100 * (aw - ao):+.2f} points)")
    parts.append(f"size {winner.bytes / 1e6:.3f} vs {other.bytes / 1e6:.3f} MB")
    return ", ".join(parts)


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
        rule = f"objective accuracy: the most accurate of {pool_text}"
    else:
        floor = (accuracy_of(reference) or 0.0) - objective.max_accuracy_drop - ACCURACY_EPS
        contenders = sorted((a for a in pool if (accuracy_of(a) or 0.0) >= floor),
                            key=_objective_key(objective.objective, stat))
        winner = contenders[0]
        what = "fastest" if objective.objective == "latency" else "smallest"
        rule = (f"objective {objective.objective}: the {what} of {pool_text} within "
                f"{100 * objective.max_accuracy_drop:.2f} points of the most accurate one ({reference.name}, "
                f"accuracy {accuracy_of(reference) or 0.0:.4f})")
    others = [a for a in contenders if a is not winner]
    base.selected, base.contenders = winner, [a.name for a in contenders]
    if others:
        base.runner_up = others[0].name
        reason = f"{rule}; {winner.name} beats the runner-up {others[0].name}: {_margins(winner, others[0], stat)}"
    else:
        reason = f"{rule}; {winner.name} is the only contender ({_fmt_lat(winner, stat)})"
        outside = [a for a in ranked if a is not winner]
        if outside:
            fastest = min(outside, key=_objective_key(objective.objective, stat))
            reason += (f"; the best excluded by the accuracy drop is {fastest.name}: "
                       f"{_margins(winner, fastest, stat)}")
    base.reason = prefix + reason + "."
    return base
