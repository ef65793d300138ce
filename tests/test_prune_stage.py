"""The prune stage: recipe section, checks before any work, budget accounting of the plans, the merged artifact's
round trip, the report section, and whole LayerMerge recipes through the command line."""

from __future__ import annotations

import json
from pathlib import Path

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
)
from edgekd.report.prune import prune_section
from edgekd.runtime import load_torch_artifact, open_runner, save_torch_artifact
from edgekd.stages._prune_plans import Tables, plan_all
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


def _tables(fraction_room: float = 0.0) -> Tables:
    """resnet8 with every entry measured at 1.0 ms, a 0.25 ms per-call overhead and a 0.5 ms unmodelled part."""
    chain = analyse(create("resnet8", num_classes=10, in_channels=1).eval(), torch.rand(1, 1, 8, 8))
    options = candidate_options(chain)
    raw = {o.key: 1.0 for o in options}
    importance = {o.key: 1.0 - 0.01 * (o.segment.end - o.segment.st) for o in options}
    importance.update({f"drop-{layer.index}": 0.9 for layer in chain.layers})
    return Tables(chain, options, LatencySettings(device="t"), 1, raw, 0.25, chain.depth * 0.75 + 0.5, importance,
                  0.9, ImportanceSettings())


def test_plans_respect_the_budget_with_the_overhead_and_fixed_part_accounted() -> None:
    tables = _tables()
    depth = tables.chain.depth
    assert tables.unpruned_table_ms == pytest.approx(0.75 * depth) and tables.fixed_ms == pytest.approx(0.5)
    cfg = _recipe(budgets=[0.8, 0.6], budgets_ms=[0.6]).prune
    results, infeasible = plan_all(cfg, tables)
    assert "layermerge-0.6ms" in infeasible  # 0.6 ms leaves 0.1 ms for the table: no plan
    assert {(r.method, r.budget) for r in results} >= {("layermerge", "0.8"), ("layermerge", "0.6")}
    for r in results:
        budget = {"0.8": 0.8, "0.6": 0.6}[r.budget] * tables.unpruned_ms
        convs = [s for s in r.plan.segments if s.kept]
        assert r.budget_ms == pytest.approx(budget) and r.table_budget_ms == pytest.approx(budget - 0.5)
        assert r.table_ms == pytest.approx(0.75 * len(convs))  # each kept segment is one 0.75 ms entry
        assert r.predicted_ms == pytest.approx(r.table_ms + 0.5) and r.predicted_ms <= budget + 1e-9
        if r.method == "prune-only":  # layer pruning keeps every activation
            assert len(r.plan.segments) == depth
    described = results[0].describe(tables.chain)
    slow_table = _tables()  # entries timed on a slower machine than the whole network: they sum to twice it
    slow_table.unpruned_ms = 0.5 * slow_table.unpruned_table_ms
    assert slow_table.fixed_ms == 0 and slow_table.scale == pytest.approx(0.5)
    for r in plan_all(_recipe(budgets=[0.8], baselines=[]).prune, slow_table)[0]:  # 0.8 of the table's own sum
        assert r.budget_ms == pytest.approx(0.8 * slow_table.unpruned_ms)
        assert r.table_budget_ms == pytest.approx(0.8 * 0.75 * depth) and r.table_ms <= r.table_budget_ms
        assert r.predicted_ms == pytest.approx(0.5 * r.table_ms) and r.predicted_ms <= r.budget_ms
    assert described["merged_depth"] == len([s for s in results[0].plan.segments if s.kept])
    assert all(k[2] in (1, 3, 5, 7) for k in described["kernels"])


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
    result = {"method": "layermerge", "budget": "0.5", "predicted_ms": predicted, "kept_convs": [1, 2],
              "merged_depth": 1, "val_accuracy": 0.8, "artifact": "student", "measured_artifact": measured_name}
    return {"statistic": "p50", "unpruned_measured_artifact": "student-unpruned-onnx-fp32", "unpruned_measured_ms": 2.0,
            "depth": 3, "base_val_accuracy": 0.9, "results": [result, {**result, "method": "prune-only",
                                                                      "artifact": "b", "measured_artifact": "b-onnx"}],
            "entries": 9, "runtime": "onnxruntime", "precision": "fp32", "batch_size": 1, "overhead_ms": 0.01,
            "unpruned_table_ms": 1.5, "fixed_ms": 0.5, "table_scale": 1.0, "importance_mode": "proxy",
            "importance_steps": 4,
            "deployed": "0.5", "infeasible": {"merge-only-0.5": "too tight"}}


def _art(name: str, acc: float, p50: float) -> dict:
    return {"name": name, "metrics": {"accuracy": acc, "latency_ms": {"p50": p50}}}


def test_report_section_flags_predictions_more_than_20_percent_off() -> None:
    manifest = {"recipe": "r", "device": "d", "artifacts": [
        _art("student-unpruned-onnx-fp32", 0.91, 2.0), _art("student-onnx-fp32", 0.85, 1.0), _art("b-onnx", 0.86, 1.0)]}
    close = "\n".join(prune_section(manifest, {"prune": {"info": _info(1.1)}}, {}))
    assert "| 0.5 | LayerMerge | `student` | 2 / 1 | 0.8000 | 0.8500 | 1.1000 | 1.0000 | +10 % |" in close
    assert "**proxy**" in close and "`merge-only-0.5`: too tight" in close
    assert ("LayerMerge 0.8500 vs prune-only 0.8600, merge-only no plan — at least as accurate as every baseline: "
            "**no**") in close
    far = "\n".join(prune_section(manifest, {"prune": {"info": _info(1.3)}}, {}))
    assert "| 1.3000 | 1.0000 | +30 % **⚠ > 20 %** |" in far
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
        assert r["merge_max_abs_diff"] < 1e-3 and r["predicted_ms"] >= 0  # smoke: 3 timed calls per entry
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
