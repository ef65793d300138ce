"""The mixed-precision INT8 engines inside a run: a digits ``--smoke`` run of the quickstart recipe on a device with
ONNX Runtime and OpenVINO builds, evaluates and times the ``ort-mixed`` and ``nncf-mixed`` artifacts like any other,
chosen on the validation split, with their float nodes computed in float by each runtime, and their latency saved
per ranked node; an ``ort-mixed`` that keeps no node in float is not built beside ``ort``."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import onnx
import pytest

from edgekd.quantize.mixed import FLOAT_NODES_KEY
from tests.conftest import ROOT, run_cli
from tests.test_sensitivity import optimised, runtime_precisions

QUICKSTART = ROOT / "pipelines" / "quickstart.yaml"
MIXED = "student-onnx-int8-ort-mixed"
NNCF_MIXED = "student-openvino-int8-nncf-mixed"
FLOAT_NODES = 2

DEVICE = """\
name: cpu-int8
description: ONNX Runtime and OpenVINO on the CPU, fp32 and int8
arch: x86_64
threads: 1
access: {kind: local}
runtimes:
  - runtime: onnxruntime
    precisions: [fp32, int8]
    providers: [CPUExecutionProvider]
  - runtime: openvino
    device: CPU
    precisions: [fp32, int8]
"""


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("device") / "cpu-int8.yaml"
    path.write_text(DEVICE)
    return path


@pytest.fixture(scope="module")
def run(device: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run_dir = tmp_path_factory.mktemp("mixed") / "run"
    result = run_cli("run", str(QUICKSTART), "--device", str(device), "--out", str(run_dir), "--smoke", "--set",
                     f"quantize={{engines: [ort, ort-mixed, nncf-mixed], mixed: {{float_nodes: {FLOAT_NODES}}}}}")
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return {"dir": run_dir, "manifest": manifest, "artifacts": {a["name"]: a for a in manifest["artifacts"]}}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "fmt", "method"), [(MIXED, "onnx", "ort-mixed"),
                                                     (NNCF_MIXED, "openvino", "nncf-mixed")])
def test_the_mixed_artifacts_are_built_evaluated_and_timed_like_any_other(run: dict[str, Any], name: str, fmt: str,
                                                                          method: str) -> None:
    art = run["artifacts"][name]
    assert art["status"] == "ok" and art["precision"] == "int8" and art["format"] == fmt
    assert art["info"]["method"] == method
    assert 0.0 <= art["metrics"]["accuracy"] <= 1.0 and 0.0 <= art["metrics"]["val_accuracy"] <= 1.0
    assert art["metrics"]["latency_ms"]["p50"] > 0
    assert art["smoke"] is True


@pytest.mark.slow
@pytest.mark.parametrize(("name", "fp32_name"), [(MIXED, "student-onnx-fp32"),
                                                  (NNCF_MIXED, "student-openvino-fp32")])
def test_the_choice_is_made_on_the_validation_split(run: dict[str, Any], name: str, fp32_name: str) -> None:
    art, fp32 = run["artifacts"][name], run["artifacts"][fp32_name]
    mixed = art["info"]["mixed"]
    ranked = [row["node"] for row in mixed["sensitivity"]]
    assert mixed["split"] == "validation"
    # digits' validation split is smaller than the default ranking subset, so all of it ranks and chooses: the float
    # and mixed accuracies recorded by the build are the evaluate stage's validation accuracies of the two artifacts
    assert mixed["ranking_samples"] == art["metrics"]["val_samples"] == fp32["metrics"]["val_samples"]
    # (the OpenVINO fp32 artifact is converted from torch, the build's IR from the ONNX graph: one sample may differ)
    one = 1 / mixed["ranking_samples"] if name == NNCF_MIXED else 1e-9
    assert mixed["fp32_accuracy"] == pytest.approx(fp32["metrics"]["val_accuracy"], abs=one)
    assert mixed["accuracy"] == pytest.approx(art["metrics"]["val_accuracy"], abs=one)
    assert mixed["k"] == FLOAT_NODES and mixed["max_drop"] is None
    assert mixed["excluded"] == ranked[:FLOAT_NODES]
    assert mixed["tried"] == [{"k": FLOAT_NODES, "accuracy": mixed["accuracy"]}]
    precisions = ["fp32"] * FLOAT_NODES + ["int8"] * (len(ranked) - FLOAT_NODES)
    assert [row["precision"] for row in mixed["sensitivity"]] == precisions
    # ResNet-8: the stem conv, two convs per block in three blocks, two 1x1 downsample convs, the classifier
    assert Counter(row["op_type"] for row in mixed["sensitivity"]) == {"Conv": 9, "Gemm": 1}
    gains = [row["accuracy_gain"] for row in mixed["sensitivity"]]
    assert gains == sorted(gains, reverse=True)


@pytest.mark.slow
def test_onnxruntime_runs_the_float_nodes_in_float(run: dict[str, Any], tmp_path: Path) -> None:
    art = run["artifacts"][MIXED]
    excluded = art["info"]["mixed"]["excluded"]
    model = tmp_path / "model.onnx"
    shutil.copy(run["dir"] / art["path"], model)
    props = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    assert json.loads(props[FLOAT_NODES_KEY]) == excluded
    graph = optimised(model)  # the graph ONNX Runtime's CPU provider runs, as edgekd's session opens this model
    ops = {n.name: n.op_type for n in graph.node if n.name in {r["node"] for r in art["info"]["mixed"]["sensitivity"]}}
    assert {name: op for name, op in ops.items() if name in excluded} == dict.fromkeys(excluded, "Conv")
    assert set(ops.values()) - {"Conv"} == {"QLinearConv", "QGemm"}
    assert Counter(ops.values())["Conv"] == FLOAT_NODES
    inits = {i.name: i.data_type for i in graph.initializer}
    assert all(inits[n.input[1]] == onnx.TensorProto.FLOAT for n in graph.node if n.name in excluded)
    # the bench profile, from edgekd's own session: each ranked node it lists ran as a float Conv iff kept in float
    profiled = [(node, layer["op_type"]) for layer in art["metrics"]["layers"] for node in layer["onnx_nodes"]
                if node in ops]
    assert profiled
    assert all((op == "Conv") == (node in excluded) for node, op in profiled), profiled


@pytest.mark.slow
def test_openvino_runs_the_float_nodes_in_float(run: dict[str, Any]) -> None:
    art = run["artifacts"][NNCF_MIXED]
    mixed = art["info"]["mixed"]
    precisions = runtime_precisions(run["dir"] / art["path"], [r["node"] for r in mixed["sensitivity"]])
    assert {n: p for n, p in precisions.items() if n in mixed["excluded"]} == dict.fromkeys(mixed["excluded"], "f32")
    assert {p for n, p in precisions.items() if n not in mixed["excluded"]} <= {"u8", "i8"}


@pytest.mark.slow
@pytest.mark.parametrize("name", [MIXED, NNCF_MIXED])
def test_the_report_has_the_per_node_table(run: dict[str, Any], name: str) -> None:
    report = (run["dir"] / "report.md").read_text()
    section = report.split(f"## Mixed precision: {name}")[1].split("\n## ")[0]
    mixed = run["artifacts"][name]["info"]["mixed"]
    assert f"{FLOAT_NODES} node(s) in float (a fixed count), chosen on the validation split" in section
    for row in mixed["sensitivity"][:FLOAT_NODES]:
        assert f"| `{row['node']}` | Conv | {row['sqnr_db']:.1f} | {row['added_sqnr_db']:.1f} |" in section
        assert f"| {100 * row['accuracy_gain']:+.2f} | fp32 |" in section


@pytest.mark.parametrize(("value", "expected"), [
    ("{engines: [ort-mixed], mixed: {max_drop: 2}}", "quantize.mixed.max_drop: Input should be less than 1"),
    ("{engines: [ort-mixed], mixed: {float_nodes: 3, max_excluded: 1}}",
     "quantize.mixed: float_nodes 3 is above max_excluded 1"),
    ("{engines: [ort-mixed], mixed: {ranking_samples: 0}}", "quantize.mixed.ranking_samples: Input should be greater"),
    ("{engines: [ort-mixed], mixed: {max_dorp: 0.02}}",
     "quantize.mixed.max_dorp: unknown key; did you mean 'max_drop'?"),
    ("{engines: [ort-mix]}",
     "quantize.engines.0: Input should be 'ort', 'nncf', 'ort-mixed', 'nncf-mixed', 'aiq-mixed' or 'trt-mixed'"),
])
def test_bad_mixed_settings_exit_2_with_one_line(device: Path, value: str, expected: str) -> None:
    result = run_cli("validate", str(QUICKSTART), "--device", str(device), "--set", f"quantize={value}", timeout=120)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("name", "reference"), [(MIXED, "student-onnx-fp32"), (NNCF_MIXED, "student-onnx-fp32")])
def test_every_ranked_node_has_its_latency_saved(run: dict[str, Any], name: str, reference: str) -> None:
    """The bench stage joins the profiles at the ranked nodes: each quantized node of the ranking is one compute
    entry timed in both the fp32 and the INT8 profile (the OpenVINO IR converted from ONNX against the fp32 ONNX
    model opened in OpenVINO, the IR exported from PyTorch naming its layers otherwise)."""
    art = run["artifacts"][name]
    saved = art["metrics"]["latency_saved"]
    assert (saved["float_artifact"], saved["float_runtime"]) == (reference, art["runtime"])
    entries = {n: e for e in saved["nodes"] if e["role"] == "compute" for n in e["names"]}
    for row in art["info"]["mixed"]["sensitivity"]:
        entry = entries[row["node"]]
        assert entry["float_op"] and entry["int8_op"], entry
        assert entry["saved_ms"] == pytest.approx(entry["float_ms"] - entry["int8_ms"])
    report = (run["dir"] / "report.md").read_text()
    assert "| latency saved (ms) |" in report.split(f"## Mixed precision: {name}")[1].split("\n## ")[0]


@pytest.mark.slow
def test_ort_mixed_with_no_float_node_is_not_built_beside_ort(device: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_cli("run", str(QUICKSTART), "--device", str(device), "--out", str(run_dir), "--smoke", "--set",
                     "quantize={engines: [ort, ort-mixed], mixed: {float_nodes: 0}}")
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    names = [a["name"] for a in manifest["artifacts"]]
    assert MIXED not in names and not (run_dir / "quantize" / MIXED).exists()
    [stage] = [s for s in manifest["stages"] if s["name"] == "quantize"]
    assert stage["info"]["not_built"][MIXED].startswith("kept no node in float (k = 0): the same graph as "
                                                        "student-onnx-int8-ort")
    [ort] = [a for a in manifest["artifacts"] if a["name"] == "student-onnx-int8-ort"]
    assert (ort["info"]["mixed"]["k"], ort["info"]["mixed"]["engine"]) == (0, "ort-mixed")
