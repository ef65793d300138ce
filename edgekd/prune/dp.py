"""The LayerMerge dynamic program and the two baselines of the paper (Kim et al., ICML 2024, section 4, Table 1).

LayerMerge: with latency discretised in steps of ``resolution_ms`` (each entry's cost rounded *up* and the budget
*down*, so the real sum of the chosen entries never exceeds the budget; the paper's code truncates both),

    D[t, 0] = 0                 for every t ≥ 0
    D[t, end] = max over st < end and option c of  D[t − T(st, end, c), st] + I(st, end, c)

ties going to the option with the smaller accumulated latency; ``D[T₀, L]`` is the best plan under budget ``T₀``
and backtracking yields its kept activations (segment ends) and kept convs (with their kernel choice).

Baselines at the same budget:

- *merge-only* depth compression (Kim et al., "Efficient Latency-Aware CNN Depth Compression via Two-Stage Dynamic
  Programming", ICML 2023): activations are removed and convs merged but no conv is pruned. Simplification: the
  same one-stage DP restricted to each segment's all-convs-kept option (the 2023 method's second stage, which picks
  the activations kept inside a merged block, is folded into the choice of segment ends).
- *layer-pruning-only*: a 0/1 knapsack over prunable layers (convs that may become identities): keeping layer ``j``
  costs ``T_j`` (its conv + activation entry) and is worth ``1 − I_drop(j)`` (its importance loss when dropped);
  the irreducible layers are always kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgekd.errors import UserError
from edgekd.prune.segments import Option, Plan

_DIGITS = 9  # importance sums are compared rounded, for floating-point stability (as the paper's code does)


@dataclass(frozen=True)
class Entry:
    """One row of the lookup tables: an option with its latency (ms) and normalised importance."""

    option: Option
    latency_ms: float
    importance: float


@dataclass(frozen=True)
class Solution:
    """The chosen entries, in order, with their summed importance and latency (ms)."""

    entries: tuple[Entry, ...]
    importance: float
    latency_ms: float

    @property
    def plan(self) -> Plan:
        return Plan(tuple(e.option.segment for e in self.entries))


def _steps(latency_ms: float, resolution_ms: float) -> int:
    return max(0, math.ceil(latency_ms / resolution_ms - 1e-9))


def _capacity(budget_ms: float, resolution_ms: float) -> int:
    """The budget in whole steps, rounded down (with costs rounded up, the real sum stays within the budget)."""
    return math.floor(budget_ms / resolution_ms + 1e-9) if budget_ms >= 0 else -1


def calibration(measured_ms: float | None, unpruned_table_ms: float | None) -> tuple[float, float]:
    """``(scale, fixed_ms)`` mapping a table sum to whole-network latency: ``scale · sum + fixed``.

    From the unpruned network's measured latency ``M`` and its table sum ``S``: where ``M ≥ S`` the table misses the
    head, the residual adds and the glue, ``fixed = M − S`` and ``scale = 1``; where ``M < S`` the entries over-model
    the network (per-operator costs a whole network amortises, or entries timed on a busier machine), ``fixed = 0``
    and ``scale = M / S``. Without both figures: ``(1, 0)``.
    """
    if measured_ms is None or unpruned_table_ms is None or unpruned_table_ms <= 0:
        return 1.0, 0.0
    return min(1.0, measured_ms / unpruned_table_ms), max(0.0, measured_ms - unpruned_table_ms)


def table_budget(budget_ms: float | None, *, fraction: float | None = None, measured_ms: float | None = None,
                 unpruned_table_ms: float | None = None) -> float:
    """The budget ``T₀`` on the table's sum, from a whole-network budget: ``(B − fixed) / scale``
    (:func:`calibration`).

    Give either ``budget_ms`` or ``fraction`` (of ``measured_ms``, the unpruned network's measured latency).
    """
    if (budget_ms is None) == (fraction is None):
        raise UserError("LayerMerge budget: give exactly one of budget_ms or fraction")
    if fraction is not None:
        if measured_ms is None or not 0 < fraction:
            raise UserError("LayerMerge budget: a fraction (> 0) needs the unpruned network's measured latency")
        budget_ms = fraction * measured_ms
    assert budget_ms is not None
    if budget_ms <= 0:
        raise UserError(f"LayerMerge budget must be positive, got {budget_ms} ms")
    scale, fixed = calibration(measured_ms, unpruned_table_ms)
    return (budget_ms - fixed) / scale


def solve(entries: Sequence[Entry], depth: int, budget_ms: float, *, resolution_ms: float = 0.001) -> Solution:
    """The LayerMerge DP (module docstring) over ``entries`` for a chain of ``depth`` layers."""
    if resolution_ms <= 0:
        raise ValueError(f"resolution_ms must be positive, got {resolution_ms}")
    T = _capacity(budget_ms, resolution_ms)
    by_end: dict[int, list[tuple[int, Entry]]] = {}
    for entry in entries:
        by_end.setdefault(entry.option.segment.end, []).append((_steps(entry.latency_ms, resolution_ms), entry))
    fastest = _fastest(by_end, depth)
    if T < 0 or fastest is None or fastest > T:
        shown = ("no complete plan exists" if fastest is None
                 else f"the fastest plan needs {fastest * resolution_ms:.4g} ms")
        raise UserError(f"latency budget {budget_ms:.4g} ms (table sum) is below the minimum: {shown}")
    imp = np.full((depth + 1, T + 1), -np.inf)
    time = np.zeros((depth + 1, T + 1), dtype=np.int64)
    arg = np.full((depth + 1, T + 1), -1, dtype=np.int64)
    imp[0, :] = 0.0
    flat: list[tuple[int, Entry]] = []
    for end in range(1, depth + 1):
        for cost, entry in by_end.get(end, []):
            st = entry.option.segment.st
            if cost > T:
                continue
            cand = np.full(T + 1, -np.inf)
            cand[cost:] = imp[st, : T + 1 - cost] + entry.importance
            cand_time = np.zeros(T + 1, dtype=np.int64)
            cand_time[cost:] = time[st, : T + 1 - cost] + cost
            r_cand, r_cur = np.round(cand, _DIGITS), np.round(imp[end], _DIGITS)
            better = (r_cand > r_cur) | ((r_cand == r_cur) & np.isfinite(cand) & (cand_time < time[end]))
            imp[end] = np.where(better, cand, imp[end])
            time[end] = np.where(better, cand_time, time[end])
            arg[end] = np.where(better, len(flat), arg[end])
            flat.append((cost, entry))
    chosen, t, end = [], T, depth
    while end > 0:
        cost, entry = flat[arg[end, t]]
        chosen.append(entry)
        t, end = t - cost, entry.option.segment.st
    chosen.reverse()
    return Solution(tuple(chosen), float(sum(e.importance for e in chosen)),
                    float(sum(e.latency_ms for e in chosen)))


def _fastest(by_end: dict[int, list[tuple[int, Entry]]], depth: int) -> int | None:
    """The smallest discretised latency of any complete plan (a shortest path), or None if there is none."""
    best: list[float] = [0.0] + [math.inf] * depth
    for end in range(1, depth + 1):
        for cost, entry in by_end.get(end, []):
            best[end] = min(best[end], best[entry.option.segment.st] + cost)
    return None if math.isinf(best[depth]) else int(best[depth])


def solve_merge_only(entries: Sequence[Entry], depth: int, budget_ms: float, *,
                     resolution_ms: float = 0.001) -> Solution:
    """The merge-only baseline: the DP over the options that keep every conv of their segment."""
    full = [e for e in entries
            if e.option.segment.kept == tuple(range(e.option.segment.st + 1, e.option.segment.end + 1))]
    return solve(full, depth, budget_ms, resolution_ms=resolution_ms)


@dataclass(frozen=True)
class KnapsackItem:
    """A prunable layer: latency of keeping it and its importance when dropped (``exp(Δacc)``)."""

    layer: int
    latency_ms: float
    drop_importance: float


def solve_knapsack(items: Sequence[KnapsackItem], fixed_ms: float, budget_ms: float, *,
                   resolution_ms: float = 0.001) -> tuple[frozenset[int], float]:
    """The layer-pruning-only baseline: layers to keep, maximising ``Σ_kept (1 − I_drop)`` subject to
    ``fixed_ms + Σ_kept T ≤ budget_ms`` (0/1 knapsack, costs rounded up). Returns ``(kept layers, latency_ms)``."""
    capacity = _capacity(budget_ms - fixed_ms, resolution_ms)
    if capacity < 0:
        raise UserError(f"latency budget {budget_ms:.4g} ms (table sum) is below the {fixed_ms:.4g} ms of the "
                        "layers that cannot be pruned")
    value = np.zeros(capacity + 1)
    take = np.zeros((len(items), capacity + 1), dtype=bool)
    for n, item in enumerate(items):
        cost, gain = _steps(item.latency_ms, resolution_ms), 1.0 - item.drop_importance
        if cost > capacity:
            continue
        cand = np.full(capacity + 1, -np.inf)
        cand[cost:] = value[: capacity + 1 - cost] + gain
        take[n] = np.round(cand, _DIGITS) > np.round(value, _DIGITS)
        value = np.where(take[n], cand, value)
    kept, c = set(), capacity
    for n in range(len(items) - 1, -1, -1):
        if take[n, c]:
            kept.add(items[n].layer)
            c -= _steps(items[n].latency_ms, resolution_ms)
    return frozenset(kept), fixed_ms + sum(i.latency_ms for i in items if i.layer in kept)
