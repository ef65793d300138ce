"""The in-context LayerMerge latency model: Δ from pairs timed interleaved with the unpruned network, the median of a
change's pairs, the DP's shares, the cache log, and the timer on the real runtime."""

from __future__ import annotations

import json
import statistics
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
from edgekd.prune.context import REFERENCE, change_ratio, log_timings, network_key, pending, reference_timings

TRUE_MS = {None: 10.0, "a": 7.0, "b": 9.0, "c": 10.5, "d": 6.0}  # the unpruned network (None) and four changes


def _pair_timer(calls: list[str | None], speeds: list[float]):
    """Pairs at the k-th speed of ``speeds`` (a shared machine's speed, the same for both networks of a pair)."""
    def time_pair(key: str | None) -> tuple[float, float]:
        speed = speeds[len(calls) % len(speeds)]
        calls.append(key)
        return TRUE_MS[key] * speed, TRUE_MS[None] * speed
    return time_pair


def _ratio(key: str) -> float:
    return TRUE_MS[key] / TRUE_MS[None] - 1


def test_a_pair_cancels_whatever_speed_the_machine_ran_at(tmp_path: Path) -> None:
    calls: list[str | None] = []
    log = ContextLog(tmp_path, {"net": "n"})
    time_in_context(log, ["a", "b", "c", "d"], _pair_timer(calls, [1.0, 2.3, 1.1, 1.0]))
    assert calls == ["a", "b", "c", "d"]  # one pair each: the unpruned network is timed inside every pair
    timings = log_timings(log.log)
    for key in "abcd":
        assert change_ratio(timings[key]) == pytest.approx(_ratio(key), abs=1e-12)
    # b ran 2.3x slow: the absolute difference would carry it, L(N_b) − R = (9 − 10) · 2.3
    assert timings["b"][0].ms - timings["b"][0].reference_ms == pytest.approx(-2.3)
    assert reference_timings(log.log) == pytest.approx([10.0, 23.0, 11.0, 10.0])
    model = ContextModel.from_log(log.log, 4, {k: 1 for k in "abcd"})
    assert model.reference_ms == pytest.approx(10.5)  # the median of 10, 23, 11, 10
    assert model.deltas["d"] == pytest.approx(10.5 * (6.0 / 10.0 - 1))
    assert model.ratio_noise == 0.0  # no change timed twice


def test_a_network_with_nothing_to_change_gets_the_unpruned_network_timed_against_itself(tmp_path: Path) -> None:
    calls: list[str | None] = []
    log = ContextLog(tmp_path, {"net": "n"})
    time_in_context(log, [], _pair_timer(calls, [1.0]))
    assert calls == [None] and log.log == [[REFERENCE, 10.0, 10.0]]
    assert ContextModel.from_log(log.log, 2, {}).reference_ms == pytest.approx(TRUE_MS[None])
    time_in_context(log, [], _pair_timer(calls, [1.0]))
    assert calls == [None]  # found in the log: not timed again


def test_pending_lists_each_change_as_often_as_it_lacks_pairs_in_rounds() -> None:
    log = [["a", 7.0, 10.0], ["b", 9.0, 10.0], ["b", 9.0, 10.0], ["b", 9.0, 10.0], [REFERENCE, 10.0, 10.0]]
    # a lacks 2, b none, c 3: round 1 a c, round 2 a c, round 3 c
    assert pending(log, ["a", "b", "c", "a"], repeats=3) == ["a", "c", "a", "c", "c"]
    assert pending(log, ["a", "b"], repeats=1) == []


def test_repeats_take_the_median_pair_so_one_lucky_timing_does_not_decide(tmp_path: Path) -> None:
    calls: list[str | None] = []
    lucky = iter([0.5, 1.0, 1.0, 1.0, 1.0, 1.0])  # the first timing of a came out at half its latency

    def time_pair(key: str | None) -> tuple[float, float]:
        calls.append(key)
        return TRUE_MS[key] * next(lucky), TRUE_MS[None]

    log = ContextLog(tmp_path, {"net": "n"})
    time_in_context(log, ["a", "b"], time_pair)
    assert change_ratio(log_timings(log.log)["a"]) == pytest.approx(3.5 / 10 - 1)
    time_in_context(log, ["a", "b"], time_pair, repeats=3)
    assert calls == ["a", "b", "a", "b", "a", "b"]
    # ratios of a: −0.65, −0.3, −0.3 → median −0.3; the standard deviation of a's three ratios is
    # sqrt(((−0.35 + 0.35/3)² + 2 · (0.35/3)²) / 2) = 0.2021; b's three agree (0): their median is 0.1010
    assert change_ratio(log_timings(log.log)["a"]) == pytest.approx(-0.3)
    model = ContextModel.from_log(log.log, 2, {"a": 1, "b": 1})
    assert model.deltas["a"] == pytest.approx(-3.0)
    assert model.ratio_noise == pytest.approx(statistics.median([0.35 / 3 ** 0.5, 0.0]), abs=1e-12)


def test_reference_spread_is_the_p10_to_p90_range_over_m() -> None:
    # eleven pairs whose reference sides read 1 … 11 ms: exclusive deciles at positions k · 12 / 10 → 1.2 and 10.8
    log = [["a", 1.0, float(ms)] for ms in range(1, 12)]
    model = ContextModel.from_log(log, 1, {"a": 1})
    assert model.reference_ms == 6.0 and model.reference_spread == pytest.approx((10.8 - 1.2) / 6.0)


def test_shares_keep_costs_non_negative_and_cancel_in_every_plan() -> None:
    # depth 4; M = 8; a change over layers 1-3 saving 7 ms needs w ≥ 7/3 > M/L = 2
    log = [["m13", 1.0, 8.0], ["d4", 7.0, 8.0]]
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
    log = [["m12", 4.5, 6.0], ["m23", 3.0, 6.0]]
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


def test_a_killed_build_resumes_with_the_pairs_still_missing(tmp_path: Path) -> None:
    calls: list[str | None] = []
    timer = _pair_timer(calls, [1.0])

    def dies_at_c(key: str | None) -> tuple[float, float]:
        if key == "c":
            raise KeyboardInterrupt  # stands for kill -9: only what the atomic writes kept survives
        return timer(key)

    with pytest.raises(KeyboardInterrupt):
        time_in_context(ContextLog(tmp_path, {"net": "n"}), ["a", "b", "c", "d"], dies_at_c)
    resumed = ContextLog(tmp_path, {"net": "n"})
    assert [name for name, *_ in resumed.log] == ["a", "b"]
    calls.clear()
    time_in_context(resumed, ["a", "b", "c", "d"], _pair_timer(calls, [1.0]))
    assert calls == ["c", "d"]
    assert set(log_timings(resumed.log)) == {"a", "b", "c", "d"}
    assert ContextLog(tmp_path, {"net": "other"}).log == []  # another network: another file


def test_cache_key_names_the_model_semantics(tmp_path: Path, monkeypatch) -> None:
    before = ContextLog(tmp_path, {"net": "n"}).path
    monkeypatch.setattr(context_mod, "MODEL", "in-context-v0")
    assert ContextLog(tmp_path, {"net": "n"}).path != before


def test_timer_times_the_merged_networks_beside_the_unpruned_one_on_the_runtime(tmp_path: Path) -> None:
    net = create("resnet8", num_classes=10, in_channels=1).eval()
    x = torch.rand(1, 1, 8, 8)
    chain = analyse(net, x)
    options = [o for o in candidate_options(chain) if o.segment.end - o.segment.st > 1][:2]
    plans = {o.key: Plan.single(chain, o.segment) for o in options}
    settings = LatencySettings(device="test-cpu", options={"threads": 1}, warmup=1, runs=3, max_seconds=0.5)
    log = ContextLog(tmp_path, {"settings": settings.cache_key(), **network_key(chain, x, [0.5], [0.25])})
    with network_timer(chain, plans, settings, x, [0.5], [0.25]) as time_pair:
        time_in_context(log, list(plans), time_pair, repeats=2)
    assert [name for name, *_ in log.log] == [options[0].key, options[1].key] * 2
    assert all(ms > 0 and reference_ms > 0 for _, ms, reference_ms in log.log)
    other = network_key(analyse(create("resnet14", num_classes=10, in_channels=1).eval(), x), x, [0.5], [0.25])
    assert other["network"] != network_key(chain, x, [0.5], [0.25])["network"]
