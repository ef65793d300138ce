"""The in-context LayerMerge latency model: Δ against interleaved reference timings, the DP's shares, the cache log,
and the timer on the real runtime."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edgekd.models import create
from edgekd.prune import (
    ContextLog,
    ContextModel,
    Entry,
    LatencySettings,
    Option,
    Plan,
    Segment,
    analyse,
    candidate_options,
    network_timer,
    solve,
    time_in_context,
)
from edgekd.prune import context as context_mod
from edgekd.prune.context import REFERENCE, best_timings, log_timings, network_key, reference_timings, unsettled

TRUE_MS = {None: 10.0, "a": 7.0, "b": 9.0, "c": 10.5, "d": 6.0}  # the unpruned network (None) and four changes
DRIFT = 0.01  # the machine slows down by this share of its first speed per timing taken


def _drifting_timer(calls: list[str | None]):
    def time_one(key: str | None) -> float:
        calls.append(key)
        return TRUE_MS[key] * (1 + DRIFT * (len(calls) - 1))
    return time_one


def _ratio(key: str) -> float:
    return TRUE_MS[key] / TRUE_MS[None] - 1


def test_reference_between_every_change_cancels_a_linear_drift_exactly(tmp_path: Path) -> None:
    calls: list[str | None] = []
    log = ContextLog(tmp_path, {"net": "n"})
    time_in_context(log, ["a", "b", "c", "d"], _drifting_timer(calls), block=1)
    assert calls == [None, "a", None, "b", None, "c", None, "d", None]
    timings = best_timings(log.log)
    # each change sits half-way between two references: their mean runs at exactly its speed
    for key in "abcd":
        assert timings[key].ratio == pytest.approx(_ratio(key), abs=1e-12)
    # the absolute difference would carry the drift: d at step 7 runs 7 % slow, so L(N_d) − R = −4 · 1.07
    assert timings["d"].ms - timings["d"].reference_ms == pytest.approx((6.0 - 10.0) * 1.07)
    model = ContextModel.from_log(log.log, 4, {k: 1 for k in "abcd"})
    assert model.reference_ms == pytest.approx(10.0 * 1.04)  # the median of the references at steps 0, 2, 4, 6, 8
    assert model.deltas["d"] == pytest.approx(10.4 * (6.0 / 10.0 - 1))


def test_a_network_with_nothing_to_change_still_gets_its_reference_timing(tmp_path: Path) -> None:
    calls: list[str | None] = []
    log = ContextLog(tmp_path, {"net": "n"})
    time_in_context(log, [], _drifting_timer(calls))
    assert calls == [None]  # M is the unpruned network's latency, needed by every plan (here: the unpruned one)
    assert ContextModel.from_log(log.log, 2, {}).reference_ms == pytest.approx(TRUE_MS[None])
    time_in_context(log, [], _drifting_timer(calls))
    assert calls == [None]  # found in the log: not timed again


def test_blocks_of_two_leave_half_a_step_of_drift_by_hand(tmp_path: Path) -> None:
    calls: list[str | None] = []
    log = ContextLog(tmp_path, {"net": "n"})
    time_in_context(log, ["a", "b", "c"], _drifting_timer(calls), block=2)
    assert calls == [None, "a", "b", None, "c", None]
    timings = best_timings(log.log)
    # references at steps 0, 3, 5: 10, 10.3, 10.5; a at step 1 (7 · 1.01), b at 2 (9 · 1.02), c at 4 (10.5 · 1.04)
    assert timings["a"].ratio == pytest.approx(7.07 / 10.15 - 1)
    assert timings["b"].ratio == pytest.approx(9.18 / 10.15 - 1)
    assert timings["c"].ratio == pytest.approx(10.92 / 10.4 - 1)
    model = ContextModel.from_log(log.log, 3, {"a": 1, "b": 2, "c": 1, "s": 1}, unchanged=["s"])
    assert reference_timings(log.log) == pytest.approx([10.0, 10.3, 10.5])
    assert model.reference_ms == pytest.approx(10.3)  # the median of every reference timing
    assert model.deltas["a"] == pytest.approx(10.3 * (7.07 / 10.15 - 1))
    assert model.reference_spread == pytest.approx(0.5 / 10.3)
    assert model.deltas["s"] == 0.0


def test_a_block_during_which_the_machine_changed_speed_is_timed_again(tmp_path: Path) -> None:
    # the machine runs 2.3x slower from the 4th timing on (a neighbour's burst), up to the 10th
    calls: list[str | None] = []

    def bimodal(key: str | None) -> float:
        calls.append(key)
        return TRUE_MS[key] * (2.3 if 4 <= len(calls) <= 10 else 1.0)

    log = ContextLog(tmp_path, {"net": "n"})
    time_in_context(log, ["a", "b", "c", "d"], bimodal, block=2, tolerance=0.1)
    # R a b R(slow): the block straddled the change, so a and b are timed again first | a b R(slow) | c d R(slow)
    assert calls == [None, "a", "b", None, "a", "b", None, "c", "d", None]
    timings = best_timings(log.log)
    for key in "abcd":
        assert timings[key].ratio == pytest.approx(_ratio(key))  # all at the slow speed, in blocks that agree
    assert log_timings(log.log)["a"][0].ratio == pytest.approx(7.0 / (10.0 * 3.3 / 2) - 1)  # the first timing
    model = ContextModel.from_log(log.log, 4, {k: 1 for k in "abcd"})
    # every Δ is M · ρ at the median speed, whatever speed its own block ran at
    assert [model.deltas[k] for k in "abcd"] == pytest.approx([model.reference_ms * _ratio(k) for k in "abcd"])


def test_references_that_never_agree_stop_after_the_retries(tmp_path: Path) -> None:
    calls: list[str | None] = []
    speeds = iter([1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 2.0])  # R a R | a R | a R: the references alternate 1x / 2x

    def flapping(key: str | None) -> float:
        calls.append(key)
        return TRUE_MS[key] * next(speeds)

    log = ContextLog(tmp_path, {"net": "n"})
    time_in_context(log, ["a"], flapping, block=1, tolerance=0.1, retries=2)
    assert calls == [None, "a", None, "a", None, "a", None]  # timed 1 + 2 times, then taken as it is
    # every timing of a sits between a 1x and a 2x reference: ρ = 7 / 15 − 1 whichever is kept
    assert best_timings(log.log)["a"].ratio == pytest.approx(7.0 / 15.0 - 1)
    assert unsettled(log.log, ["a"], 0.1, 2) == []


def test_a_plan_timed_at_another_speed_than_the_table_is_timed_again(tmp_path: Path) -> None:
    calls: list[str | None] = []

    def slow_first(key: str | None) -> float:  # 2x slow for the first three timings, then at the table's speed
        calls.append(key)
        return TRUE_MS[key] * (2.0 if len(calls) <= 3 else 1.0)

    log = ContextLog(tmp_path, {"net": "n"})
    time_in_context(log, ["a"], slow_first, block=1, expected_ms=10.0)
    # R a R, all slow: the references agree with each other but not with M = 10 ms, so a is timed again; the second
    # timing sits between the slow 20 and a 10 (they disagree), the third between two at the table's speed
    assert calls == [None, "a", None, "a", None, "a", None]
    kept = best_timings(log.log, expected_ms=10.0)["a"]
    assert (kept.ms, kept.reference_ms) == (7.0, 10.0)
    assert unsettled(log.log[:3], ["a"], 0.1, 2) == []  # without M, the first timing would have been kept
    assert unsettled(log.log[:3], ["a"], 0.1, 2, expected_ms=10.0) == ["a"]


def test_shares_keep_costs_non_negative_and_cancel_in_every_plan() -> None:
    # depth 4; M = 8; a change over layers 1-3 saving 7 ms needs w ≥ 7/3 > M/L = 2
    log = [[REFERENCE, 8.0], ["m13", 1.0], ["d4", 7.0], [REFERENCE, 8.0]]
    spans = {"s1": 1, "s2": 1, "s3": 1, "s4": 1, "m13": 3, "d4": 1}
    model = ContextModel.from_log(log, 4, spans, unchanged=["s1", "s2", "s3", "s4"])
    assert model.deltas == {"s1": 0.0, "s2": 0.0, "s3": 0.0, "s4": 0.0, "m13": -7.0, "d4": -1.0}
    assert model.share_ms == pytest.approx(7 / 3)
    assert model.cost("m13") == pytest.approx(0.0) and model.cost("d4") == pytest.approx(7 / 3 - 1)
    assert model.fixed_ms == pytest.approx(8 - 28 / 3) and model.unpruned_table_ms == pytest.approx(28 / 3)
    for plan in (["s1", "s2", "s3", "s4"], ["m13", "s4"], ["m13", "d4"], ["s1", "s2", "s3", "d4"]):
        table_sum = sum(model.cost(k) for k in plan)
        assert table_sum + model.fixed_ms == pytest.approx(model.predicted_ms(plan))
    assert model.predicted_ms(["m13", "d4"]) == pytest.approx(8 - 7 - 1)
    assert ContextModel.from_json(json.loads(json.dumps(model.to_json()))) == model


def test_the_dp_on_in_context_costs_meets_a_whole_network_budget() -> None:
    def option(st: int, end: int) -> Option:
        return Option(Segment(st, end, tuple(range(st + 1, end + 1))), 3, 1, 1, False)

    keys = {"s1": option(0, 1), "s2": option(1, 2), "s3": option(2, 3), "m12": option(0, 2), "m23": option(1, 3)}
    log = [[REFERENCE, 6.0], ["m12", 4.5], ["m23", 3.0], [REFERENCE, 6.0]]
    model = ContextModel.from_log(log, 3, {k: o.segment.end - o.segment.st for k, o in keys.items()},
                                  unchanged=["s1", "s2", "s3"])
    entries = [Entry(o, model.cost(k), {"s1": 1.0, "s2": 1.0, "s3": 1.0, "m12": 1.9, "m23": 1.5}[k])
               for k, o in keys.items()]
    # a 5 ms budget: m12 + s3 (4.5 ms, importance 2.9) beats s1 + m23 (3 ms, 2.5); the unpruned (6 ms) is over
    solution = solve(entries, 3, 5.0 - model.fixed_ms)
    chosen = [k for e in solution.entries for k, o in keys.items() if o == e.option]
    assert chosen == ["m12", "s3"] and model.predicted_ms(chosen) == pytest.approx(4.5)
    solution = solve(entries, 3, 4.0 - model.fixed_ms)  # only s1 + m23 fits 4 ms
    assert [k for e in solution.entries for k, o in keys.items() if o == e.option] == ["s1", "m23"]


def test_a_killed_build_resumes_with_a_fresh_reference(tmp_path: Path) -> None:
    calls: list[str | None] = []
    timer = _drifting_timer(calls)

    def dies_at_c(key: str | None) -> float:
        if key == "c":
            raise KeyboardInterrupt  # stands for kill -9: only what the atomic writes kept survives
        return timer(key)

    with pytest.raises(KeyboardInterrupt):
        time_in_context(ContextLog(tmp_path, {"net": "n"}), ["a", "b", "c", "d"], dies_at_c, block=8)
    resumed = ContextLog(tmp_path, {"net": "n"})
    assert [name for name, _ in resumed.log] == [REFERENCE, "a", "b"]
    calls.clear()
    time_in_context(resumed, ["a", "b", "c", "d"], _drifting_timer(calls), block=8)
    assert calls == [None, "c", "d", None]  # a fresh reference first, then only what is missing
    assert set(best_timings(resumed.log)) == {"a", "b", "c", "d"}
    assert ContextLog(tmp_path, {"net": "other"}).log == []  # another network: another file


def test_cache_key_names_the_model_semantics(tmp_path: Path, monkeypatch) -> None:
    before = ContextLog(tmp_path, {"net": "n"}).path
    monkeypatch.setattr(context_mod, "MODEL", "in-context-v0")
    assert ContextLog(tmp_path, {"net": "n"}).path != before


def test_timer_times_the_merged_networks_on_the_runtime(tmp_path: Path) -> None:
    net = create("resnet8", num_classes=10, in_channels=1).eval()
    x = torch.rand(1, 1, 8, 8)
    chain = analyse(net, x)
    options = [o for o in candidate_options(chain) if o.segment.end - o.segment.st > 1][:2]
    plans = {o.key: Plan.single(chain, o.segment) for o in options}
    settings = LatencySettings(device="test-cpu", options={"threads": 1}, warmup=1, runs=3, max_seconds=0.5)
    log = ContextLog(tmp_path, {"settings": settings.cache_key(), **network_key(chain, x, [0.5], [0.25])})
    timer = network_timer(chain, plans, settings, x, [0.5], [0.25])
    time_in_context(log, list(plans), timer, block=1, tolerance=float("inf"))  # no re-timing: the order is checked
    assert [name for name, _ in log.log] == [REFERENCE, options[0].key, REFERENCE, options[1].key, REFERENCE]
    assert all(ms > 0 for _, ms in log.log)
    other = network_key(analyse(create("resnet14", num_classes=10, in_channels=1).eval(), x), x, [0.5], [0.25])
    assert other["network"] != network_key(chain, x, [0.5], [0.25])["network"]
