"""The prune stage: recipe section, checks before any work, budget accounting of the plans, the merged artifact's
round trip, the report section, and whole LayerMerge recipes through the command line."""

from __future__ import annotations

import dataclasses
import json
import statistics
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from pydantic import ValidationError

from edgekd.config import Recipe, load_device
from edgekd.data import load_dataset
from edgekd.errors import ConfigError
from edgekd.export.onnx import check_parity, export_onnx
from edgekd.models import create
from edgekd.prune import (
    ImportanceSettings,
    LatencySettings,
    analyse,
    build_merged,
    build_pruned,
    candidate_options,
    drop_changes,
)
from edgekd.prune.context import ContextLog, ContextModel, log_timings
from edgekd.prune.segments import Plan, Segment
from edgekd.report.prune import prune_section
from edgekd.runtime import load_torch_artifact, open_runner, save_torch_artifact
from edgekd.stages import _prune_plans
from edgekd.stages._prune_plans import CONFIRM_PAIRS, Tables, TableTimings, confirm, error_cause, plan_all
from edgekd.stages.prune import MERGED_FACTORY, Prune
from tests.conftest import ROOT, needs_fmnist, run_cli

BASE = {"name": "fmnist-layermerge-test", "data": {"name": "digits"}, "student": {"model": {"name": "resnet8"}},
        "distill": {"losses": []}}


def _recipe(**prune) -> Recipe:
    return Recipe.model_validate({**BASE, "prune": prune})


def test_prune_section_budgets_and_deploy() -> None:
    cfg = _recipe(budgets=[0.7, 0.5], budgets_ms=[2.5]).prune
    assert cfg.labels() == ["0.7", "0.5", "2.5ms"] and cfg.deploy_label() == "0.5"  # the tightest fraction
    assert _recipe(budgets=[], budgets_ms=[3.0, 2.0]).prune.deploy_label() == "2ms"
    assert _recipe(budgets=[0.7], budgets_ms=[2.0], deploy="2ms").prune.deploy_label() == "2ms"
    with pytest.raises(ValidationError, match="deploy 0.6 is not one of the budgets"):
        _recipe(budgets=[0.7, 0.5], deploy=0.6)
    with pytest.raises(ValidationError, match="at least one budget"):
        _recipe(budgets=[])
    with pytest.raises(ValidationError, match="prune needs a student and a distill section"):
        Recipe.model_validate({"name": "x", "prune": {}})
    with pytest.raises(ValidationError, match="budget"):
        _recipe(budgets=[1.5])


def _data():
    return load_dataset("digits", {}, val_fraction=0.1, seed=0)


def test_check_names_the_student_key_and_the_node() -> None:
    recipe = Recipe.model_validate({**BASE, "student": {"model": {"name": "tests.prune_models:two_branches"}},
                                    "prune": {}})
    with pytest.raises(ConfigError, match=r"student\.model: LayerMerge: node 'cat' joins branches") as err:
        Prune().check(recipe, load_device("x86-cpu"), _data)
    assert err.value.where == "recipe"


def test_check_refuses_a_device_without_a_table_runtime() -> None:
    device = load_device("x86-cpu").model_copy(deep=True)
    device.runtimes = [device.runtimes[0].model_copy(update={"runtime": "torch"})]
    with pytest.raises(ConfigError, match="runtimes: x86-cpu offers no runtime the LayerMerge latency table") as err:
        Prune().check(_recipe(), device, _data)
    assert err.value.where == "device"
    only_ort = load_device("x86-cpu").model_copy(deep=True)
    only_ort.runtimes = only_ort.runtimes[:1]
    with pytest.raises(ConfigError, match="prune.runtime: 'openvino' is not a runtime of device x86-cpu"):
        Prune().check(_recipe(runtime="openvino"), only_ort, _data)
    with pytest.raises(ConfigError, match="prune.precision: x86-cpu runs onnxruntime in fp32, int8, not bf16"):
        Prune().check(_recipe(precision="bf16"), only_ort, _data)
    with pytest.raises(ConfigError, match="prune.finetune.losses.0.name: 'fitnets' is a feature loss"):
        Prune().check(_recipe(finetune={"losses": [{"name": "fitnets"}]}), only_ort, _data)


def _saved(segment: Segment) -> float:
    """What a change saves in :func:`_tables`' network: ``end − st − 1`` convs merged away, or the removed one."""
    return segment.end - segment.st - 1 if segment.kept else 1


def _tables() -> Tables:
    """resnet8 where, in context, every kept conv (merged or not) costs 1 ms, a removed layer nothing, and the rest of
    the network 0.5 ms: the unpruned network takes ``depth + 0.5`` ms and a change saves ``end − st − 1`` ms (kept)
    or 1 ms (removed); a 0.25 ms per-call overhead."""
    chain = analyse(create("resnet8", num_classes=10, in_channels=1).eval(), torch.rand(1, 1, 8, 8))
    options = candidate_options(chain)
    unpruned = chain.depth + 0.5
    changes = {o.key: o.segment for o in options} | dict(drop_changes(chain))
    singles = [k for k, s in changes.items() if s.kept and s.end - s.st == 1]
    log = [[k, unpruned - _saved(s), unpruned] for k, s in changes.items() if k not in singles]
    model = ContextModel.from_log(log, chain.depth, {k: s.end - s.st for k, s in changes.items()}, singles)
    importance = {o.key: 1.0 - 0.01 * (o.segment.end - o.segment.st) for o in options}
    importance.update({f"drop-{layer.index}": 0.9 for layer in chain.layers})
    return Tables(chain, options, LatencySettings(device="t"), 1, model, 0.25, [unpruned, unpruned], importance,
                  0.9, ImportanceSettings())


def test_plans_respect_the_budget_and_are_predicted_from_their_changes() -> None:
    tables = _tables()
    depth = tables.chain.depth
    assert tables.unpruned_ms == depth + 0.5 and tables.model.share_ms == pytest.approx(1 + 0.5 / depth)
    assert tables.fixed_ms == pytest.approx(0.0) and tables.unpruned_table_ms == pytest.approx(depth + 0.5)
    cfg = _recipe(budgets=[0.8, 0.6], budgets_ms=[0.6]).prune
    results, infeasible = plan_all(cfg, tables)
    assert "layermerge-0.6ms" in infeasible  # every plan keeps at least one conv: 1.5 ms
    assert {(r.method, r.budget) for r in results} >= {("layermerge", "0.8"), ("layermerge", "0.6"),
                                                       ("prune-only", "0.6")}
    for r in results:
        budget = {"0.8": 0.8, "0.6": 0.6}[r.budget] * tables.unpruned_ms
        convs = [s for s in r.plan.segments if s.kept]
        assert r.budget_ms == pytest.approx(budget) and r.table_budget_ms == pytest.approx(budget)
        assert r.predicted_ms == pytest.approx(0.5 + len(convs))  # by construction of the timings
        assert r.predicted_ms == pytest.approx(r.table_ms + tables.fixed_ms) and r.predicted_ms <= budget + 1e-9
        if r.method == "prune-only":  # layer pruning keeps every activation
            assert len(r.plan.segments) == depth
    described = results[0].describe(tables.chain)
    assert described["merged_depth"] == len([s for s in results[0].plan.segments if s.kept])
    assert all(k[2] in (1, 3, 5, 7) for k in described["kernels"])


def test_confirmation_times_planned_changes_again_until_a_lucky_timing_no_longer_decides(tmp_path: Path,
                                                                                      monkeypatch) -> None:
    tables = _tables()
    chain, unpruned = tables.chain, tables.unpruned_ms
    changes = {o.key: o.segment for o in tables.options} | dict(drop_changes(chain))
    singles = [k for k, s in changes.items() if s.kept and s.end - s.st == 1]
    cfg = _recipe(budgets=[0.6], baselines=[]).prune
    honest = plan_all(cfg, tables)[0][0]
    # a change the honest plan does not use, whose first pair came out 3 ms too fast
    lucky = next(k for k, s in changes.items() if s.kept and k not in singles
                 and k not in tables.change_keys(honest.plan))
    calls: list[str | None] = []

    @contextmanager
    def fake_timer(chain, plans, settings, example, mean, std):  # every later pair is the truth
        def time_pair(key):
            calls.append(key)
            return unpruned - _saved(changes[key]), unpruned
        yield time_pair

    monkeypatch.setattr(_prune_plans, "network_timer", fake_timer)
    ctx = SimpleNamespace(data=lambda: SimpleNamespace(mean=[0.5], std=[0.25]), console=None, log=lambda line: None)
    log = ContextLog(tmp_path, {"net": "resnet8"})
    for key, segment in changes.items():
        if key not in singles:
            log.add(key, unpruned - _saved(segment) - 3.0 * (key == lucky), unpruned)
    timings = TableTimings(ctx, chain, tables.settings, torch.rand(1, 1, 8, 8),
                           {k: Plan.single(chain, s) for k, s in changes.items() if k not in singles},
                           {k: s.end - s.st for k, s in changes.items()}, singles, log)
    fooled = dataclasses.replace(tables, model=timings.model())
    first = plan_all(cfg, fooled)[0][0]
    assert lucky in fooled.change_keys(first.plan)  # the lucky timing decides the plan
    truth = 0.5 + sum(1 for s in first.plan.segments if s.kept)  # 0.5 ms plus 1 ms per kept conv
    assert first.predicted_ms == pytest.approx(truth - 3.0)  # and its prediction is 3 ms too low

    confirmed = confirm(cfg, fooled, timings)
    assert calls.count(lucky) == CONFIRM_PAIRS - 1  # timed again, then no more
    pairs = log_timings(log.log)
    assert len(pairs[lucky]) == CONFIRM_PAIRS  # median of (truth − 3, truth, truth): the truth
    assert confirmed.model.deltas[lucky] == pytest.approx(-_saved(changes[lucky]))
    final = plan_all(cfg, confirmed)[0][0]
    assert all(len(pairs[k]) >= CONFIRM_PAIRS for k in confirmed.change_keys(final.plan) if k not in singles)
    assert final.predicted_ms == pytest.approx(0.5 + sum(1 for s in final.plan.segments if s.kept))  # the truth again
    assert confirmed.confirmation["settled"] and confirmed.confirmation["rounds"] >= 1
    assert confirmed.confirmation["confirmed"] == sum(len(p) >= CONFIRM_PAIRS for p in pairs.values())


def test_error_cause_names_drift_overhead_noise_or_interaction() -> None:
    tables = _tables()  # M = depth + 0.5 = 7.5 ms for resnet8's 7 layers; references spread 0
    m = tables.unpruned_ms
    assert error_cause(5.2, 5.0, m, tables, 3) is None  # +4 %
    assert "machine's speed moved" in error_cause(5.0, 4.0, 1.2 * m, tables, 3)
    assert "runner overhead dominates" in error_cause(0.30, 0.40, m, tables, 3)  # 0.25 of 0.40 ms
    assert "3 changes of this plan interact" in error_cause(5.0, 4.0, m, tables, 3)
    assert "the same network timed in another session" in error_cause(5.0, 4.0, m, tables, 1)  # nothing to interact
    noisy = _tables()
    noisy.model = dataclasses.replace(noisy.model, ratio_noise=0.05)  # 0.375 ms of 7.5 ms per change
    assert "within the timing noise of its 9 changes" in error_cause(5.0, 4.0, m, noisy, 9)  # 1 ms ≤ 3 × 0.375
    assert "4 changes of this plan interact" in error_cause(5.0, 4.0, m, noisy, 4)  # 1 ms > 2 × 0.375


def test_merged_artifact_round_trips_through_its_factory_spec_and_exports(tmp_path: Path) -> None:
    torch.manual_seed(0)
    base = {"name": "resnet8", "kwargs": {"num_classes": 10, "in_channels": 1}}
    x = torch.rand(16, 1, 8, 8)
    chain = analyse(create(base["name"], **base["kwargs"]).eval(), x[:1])
    plan = plan_all(_recipe(budgets=[0.6], baselines=[]).prune, _tables())[0][0].plan
    pruned = build_pruned(chain, plan).eval()
    merged = build_merged(chain, plan, pruned).eval()
    spec = {"name": MERGED_FACTORY, "kwargs": {"base": base, "plan": plan.to_json(), "input_shape": [1, 8, 8]}}
    path = save_torch_artifact(merged, spec, [0.5], [0.25], tmp_path / "merged.pt")
    loaded = load_torch_artifact(path)  # weights_only=True; rebuilt by edgekd.models.create from the spec
    with torch.no_grad():
        expected = pruned((x - 0.5) / 0.25)
        assert torch.allclose(loaded(x), expected, atol=1e-5)
    onnx_path = export_onnx(loaded.net, [0.5], [0.25], x[:1], tmp_path / "merged.onnx")
    with open_runner("onnxruntime", onnx_path, threads=1) as runner:
        parity = check_parity(lambda a: loaded(torch.from_numpy(a)).detach().numpy(), runner, x.numpy(), atol=1e-4)
    assert parity["passed"], parity


def _info(predicted: float, measured_name: str = "student-onnx-fp32") -> dict:
    measured = 1.0
    error = (predicted - measured) / measured
    cause = "the 2 changes of this plan interact" if abs(error) > 0.1 else None
    result = {"method": "layermerge", "budget": "0.5", "predicted_ms": predicted, "kept_convs": [1, 2],
              "merged_depth": 1, "val_accuracy": 0.8, "artifact": "student", "measured_artifact": measured_name,
              "measured_ms": measured, "relative_error": error, "error_cause": cause}
    return {"statistic": "p50", "unpruned_measured_artifact": "student-unpruned-onnx-fp32", "unpruned_measured_ms": 2.0,
            "depth": 3, "base_val_accuracy": 0.9, "results": [result, {**result, "method": "prune-only",
                                                                      "artifact": "b", "measured_artifact": "b-onnx"}],
            "entries": 9, "runtime": "onnxruntime", "precision": "fp32", "batch_size": 1, "overhead_ms": 0.01,
            "reference_timings_ms": [2.0, 1.9, 2.1], "reference_spread": 0.1, "ratio_noise": 0.02,
            "confirmation": {"pairs": 3, "rounds": 1, "settled": True, "confirmed": 4},
            "unpruned_table_ms": 1.5, "fixed_ms": 0.5, "importance_mode": "proxy", "importance_steps": 4,
            "deployed": "0.5", "infeasible": {"merge-only-0.5": "too tight"}}


def _art(name: str, acc: float, p50: float) -> dict:
    return {"name": name, "metrics": {"accuracy": acc, "latency_ms": {"p50": p50}}}


def test_report_section_shows_the_relative_error_and_flags_it_above_10_percent_with_its_cause() -> None:
    manifest = {"recipe": "r", "device": "d", "artifacts": [
        _art("student-unpruned-onnx-fp32", 0.91, 2.0), _art("student-onnx-fp32", 0.85, 0.9), _art("b-onnx", 0.86, 1.0)]}
    close = "\n".join(prune_section(manifest, {"prune": {"info": _info(1.08)}}, {}))
    assert "| error | cause | bench ms |" in close
    assert "| 0.5 | LayerMerge | `student` | 2 / 1 | 0.8000 | 0.8500 | 1.0800 | 1.0000 | +8.0 % |  | 0.9000 |" in close
    assert "median of 3 timings during the table build, p10–p90 spread 10.0 %" in close
    assert "until each has 3 such pairs" in close and "varies by 2.0 % between pairs" in close
    assert "| — | unpruned | `student-unpruned` | 3 / 3 | 0.9000 | 0.9100 | 2.0000 | — | — |  | 2.0000 |" in close
    assert "**proxy**" in close and "`merge-only-0.5`: too tight" in close
    assert ("LayerMerge 0.8500 vs prune-only 0.8600, merge-only no plan — at least as accurate as every baseline: "
            "**no**") in close
    far = "\n".join(prune_section(manifest, {"prune": {"info": _info(1.3)}}, {}))
    assert "| 1.3000 | 1.0000 | +30.0 % **⚠ > 10 %** | the 2 changes of this plan interact | 0.9000 |" in far
    assert prune_section(manifest, {}, {}) == []


def _check_layermerge_run(run_dir: Path) -> dict:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    artifacts = {a["name"]: a for a in manifest["artifacts"]}
    info = json.loads((run_dir / "prune" / "stage.json").read_text())["info"]
    student = artifacts["student"]
    assert student["info"]["model"]["name"] == MERGED_FACTORY and student["info"]["prune"]["method"] == "layermerge"
    assert artifacts["student-unpruned"]["role"] == "unpruned"
    for name in ("student-onnx-fp32", "student-openvino-fp32"):  # the merged student passes export's parity check
        assert artifacts[name]["status"] == "ok" and artifacts[name]["info"]["parity"]["passed"], artifacts[name]
    names = [r["artifact"] for r in info["results"]] + ["student-unpruned"]
    measured = [r["measured_artifact"] for r in info["results"]] + [info["unpruned_measured_artifact"]]
    assert len(info["results"]) >= 2 and {"0.7", "0.5"} <= {r["budget"] for r in info["results"]}
    for name in names + measured:
        art = artifacts[name]
        assert art["status"] == "ok", art
        assert 0.0 <= art["metrics"]["accuracy"] <= 1.0 and art["metrics"]["latency_ms"]["p50"] > 0, name
    for r in info["results"]:
        assert r["merge_max_abs_diff"] < 1e-3  # smoke: 3 timed calls per entry, the latencies are noise
        assert r["measured_ms"] > 0 and r["relative_error"] == pytest.approx(
            (r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"])
        assert (r["error_cause"] is None) == (abs(r["relative_error"]) <= 0.1)
        at_reference = r["predicted_ms"] * r["reference_ms"] / info["unpruned_measured_ms"]
        assert r["drift_corrected_error"] == pytest.approx((at_reference - r["measured_ms"]) / r["measured_ms"])
    refs = info["reference_timings_ms"]  # the unpruned student, re-timed during the table build; M is their median
    assert len(refs) >= 2 and info["unpruned_measured_ms"] == pytest.approx(statistics.median(refs))
    selected = manifest["selected"]
    assert selected is None or artifacts[selected]["role"] not in ("pruned", "unpruned")
    report = (run_dir / "report.md").read_text()
    assert "## Depth compression (LayerMerge)" in report and (run_dir / "plots/prune_accuracy_latency.png").is_file()
    return artifacts


@pytest.mark.slow
def test_digits_layermerge_then_quantize_smoke(tmp_path: Path) -> None:
    """distill → prune → export → quantize in one run: INT8 artifacts of the merged student."""
    run_dir = tmp_path / "lm"
    result = run_cli("run", str(ROOT / "pipelines" / "digits-layermerge.yaml"), "--device", "x86-cpu", "--out",
                     str(run_dir), "--smoke", "--set", "quantize={engines: [ort]}")
    assert result.returncode == 0, result.stderr[-3000:]
    artifacts = _check_layermerge_run(run_dir)
    for name in ("student-onnx-int8-ort", "student-openvino-int8-nncf"):
        art = artifacts[name]
        assert art["precision"] == "int8" and art["status"] == "ok" and art["info"]["source"] == "student"
        assert art["info"]["parameters"] == artifacts["student"]["info"]["parameters"]  # the merged network's
        assert 0.0 <= art["metrics"]["accuracy"] <= 1.0


@pytest.mark.slow
@pytest.mark.fmnist
@needs_fmnist
def test_fmnist_layermerge_recipe_smoke(tmp_path: Path) -> None:
    run_dir = tmp_path / "flm"
    result = run_cli("run", str(ROOT / "pipelines" / "fmnist-layermerge.yaml"), "--device", "x86-cpu", "--out",
                     str(run_dir), "--smoke")
    assert result.returncode == 0, result.stderr[-3000:]
    _check_layermerge_run(run_dir)
