"""The LayerMerge DP and the knapsack baseline against brute-force enumeration on small random tables."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from edgekd.errors import UserError
from edgekd.prune.dp import Entry, KnapsackItem, calibration, solve, solve_knapsack, solve_merge_only, table_budget
from edgekd.prune.segments import Option, Segment

RES = 0.01


def _table(seed: int, depth: int) -> list[Entry]:
    """Random entries: every unit segment exists (so some plan is feasible), longer ones at random."""
    rng = random.Random(seed)
    entries = []
    for st, end in itertools.combinations(range(depth + 1), 2):
        if end - st > 1 and rng.random() < 0.4:
            continue
        for n in range(rng.randint(1, 3)):
            kept = tuple(range(st + 1, end + 1))[: n + 1]
            option = Option(Segment(st, end, kept), 2 * n + 1, 1, n, False)
            # coarse values so that ties happen and the tie-break is exercised
            entries.append(Entry(option, rng.choice([0.05, 0.1, 0.15, 0.2, 0.3]), rng.choice([0.8, 0.9, 1.0])))
    return entries


def _steps(ms: float) -> int:
    return max(0, math.ceil(ms / RES - 1e-9))


def _brute_force(entries: list[Entry], depth: int, budget: float) -> tuple[float, int] | None:
    """(best importance, least discretised time among the best) over every complete plan, or None."""
    by_st: dict[int, list[Entry]] = {}
    for e in entries:
        by_st.setdefault(e.option.segment.st, []).append(e)
    best: tuple[float, int] | None = None
    limit = math.floor(budget / RES + 1e-9)

    def walk(pos: int, imp: float, t: int) -> None:
        nonlocal best
        if t > limit:
            return
        if pos == depth:
            key = (round(imp, 9), -t)
            if best is None or key > (round(best[0], 9), -best[1]):
                best = (imp, t)
            return
        for e in by_st.get(pos, []):
            walk(e.option.segment.end, imp + e.importance, t + _steps(e.latency_ms))

    walk(0, 0.0, 0)
    return best


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("depth", [3, 5, 6])
def test_dp_finds_the_brute_force_optimum(seed: int, depth: int) -> None:
    entries = _table(seed, depth)
    rng = random.Random(seed + 100)
    for _ in range(3):
        budget = rng.uniform(0.2, 0.25 * depth)
        expected = _brute_force(entries, depth, budget)
        if expected is None:
            with pytest.raises(UserError, match="below the minimum"):
                solve(entries, depth, budget, resolution_ms=RES)
            continue
        solution = solve(entries, depth, budget, resolution_ms=RES)
        assert solution.importance == pytest.approx(expected[0], abs=1e-9)
        assert sum(_steps(e.latency_ms) for e in solution.entries) == expected[1]  # ties go to the faster
        assert solution.latency_ms <= budget + 1e-9
        segments = [e.option.segment for e in solution.entries]
        assert segments[0].st == 0 and segments[-1].end == depth
        assert all(a.end == b.st for a, b in zip(segments, segments[1:]))


def test_budget_edge_cases() -> None:
    entries = _table(0, 4)
    fastest = _brute_force(entries, 4, 1e9)
    assert fastest is not None
    minimum = min(t for t in range(1, 400) if _brute_force(entries, 4, t * RES) is not None) * RES
    solve(entries, 4, minimum, resolution_ms=RES)  # exactly the minimum is feasible
    with pytest.raises(UserError, match="below the minimum"):
        solve(entries, 4, minimum - RES, resolution_ms=RES)
    with pytest.raises(UserError, match="below the minimum"):
        solve(entries, 4, -1.0, resolution_ms=RES)
    with pytest.raises(UserError, match="no complete plan"):
        solve([e for e in entries if e.option.segment.end != 4], 4, 10.0, resolution_ms=RES)


def test_merge_only_uses_only_all_kept_options() -> None:
    entries = _table(3, 5)
    solution = solve_merge_only(entries, 5, 10.0, resolution_ms=RES)
    for e in solution.entries:
        s = e.option.segment
        assert s.kept == tuple(range(s.st + 1, s.end + 1))


@pytest.mark.parametrize("seed", range(10))
def test_knapsack_matches_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    items = [KnapsackItem(j, rng.choice([0.1, 0.2, 0.3, 0.5]), rng.uniform(0.6, 1.02)) for j in range(1, 8)]
    fixed = 0.4
    budget = rng.uniform(0.5, 2.0)
    kept, latency = solve_knapsack(items, fixed, budget, resolution_ms=RES)
    best = -math.inf
    for mask in itertools.product([0, 1], repeat=len(items)):
        cost = sum(_steps(i.latency_ms) for i, m in zip(items, mask) if m)
        if cost <= math.floor((budget - fixed) / RES + 1e-9):
            best = max(best, sum(1 - i.drop_importance for i, m in zip(items, mask) if m))
    assert sum(1 - i.drop_importance for i in items if i.layer in kept) == pytest.approx(best, abs=1e-9)
    assert latency <= budget + 1e-9
    with pytest.raises(UserError, match="cannot be pruned"):
        solve_knapsack(items, fixed, fixed - 0.1, resolution_ms=RES)


def test_calibration_adds_the_unmodelled_part_or_scales_an_over_modelling_table() -> None:
    assert calibration(10.0, 8.0) == (1.0, 2.0)  # the table misses 2 ms (head, adds)
    assert calibration(6.0, 8.0) == (0.75, 0.0)  # entries sum to more than the network: scaled by 6 / 8
    assert calibration(None, 8.0) == calibration(6.0, None) == (1.0, 0.0)
    # a fraction of an over-modelling table's network is the same fraction of the table's own sum
    assert table_budget(None, fraction=0.5, measured_ms=6.0, unpruned_table_ms=8.0) == pytest.approx(4.0)


def test_table_budget_from_fraction_subtracts_the_unmodelled_part() -> None:
    assert table_budget(2.0) == 2.0
    # measured 10 ms, of which the table models 8: a 0.5 budget is 5 ms overall, 3 ms for the table
    assert table_budget(None, fraction=0.5, measured_ms=10.0, unpruned_table_ms=8.0) == pytest.approx(3.0)
    with pytest.raises(UserError, match="exactly one"):
        table_budget(1.0, fraction=0.5, measured_ms=2.0)
    with pytest.raises(UserError, match="measured latency"):
        table_budget(None, fraction=0.5)
