"""Per-layer profiles: ONNX Runtime's profiler and OpenVINO's performance counters on a tiny exported model, every row
mapped back to the ONNX node and the PyTorch module; fp32 vs INT8 diffs; the TensorRT profiler where TensorRT is."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from edgekd.bench.measure import runner_settings
from edgekd.bench.profile import diff, kind, module_path, profile_artifact
from edgekd.export import export_onnx
from edgekd.models import create
from edgekd.quantize.ort import ort_static_quantize
from edgekd.runtimes.onnxruntime.profile import onnx_origin
from tests.conftest import run_cli

SHAPE = (1, 12, 12)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    torch.manual_seed(0)
    net = create("plain2", num_classes=4, in_channels=1).eval()
    root = tmp_path_factory.mktemp("profile")
    fp32 = export_onnx(net, [0.25], [0.5], torch.rand(2, *SHAPE), root / "fp32.onnx")
    calibration = np.random.default_rng(0).random((16, *SHAPE), dtype=np.float32)
    int8 = ort_static_quantize(fp32, root / "int8.onnx", calibration, symmetric_activations=False)
    import openvino as ov

    xml = root / "fp32.xml"
    ov.save_model(ov.convert_model(str(fp32)), str(xml), compress_to_fp16=False)  # an fp32 IR, as named
    modules = {"net." + name for name, _ in net.named_modules() if name} | {"net", "normalize"}
    graph = onnx.load(str(fp32)).graph
    return {"fp32": fp32, "int8": int8, "xml": xml, "modules": modules, "nodes": {n.name for n in graph.node},
            "producers": {out: n.name for n in graph.node for out in n.output}}


def test_module_paths_recovered_from_node_names() -> None:
    assert module_path("/net/layer1/layer1.0/conv1/Conv") == "net.layer1.0.conv1"
    assert module_path("/net/features/features.12/Relu_output_0_nchwc") == "net.features.12"
    assert module_path("__module.net.classifier.0/aten::linear/Add") == "net.classifier.0"
    assert module_path("Multiply_3165") is None and module_path("/Flatten") is None


def test_onnx_origin_undoes_onnxruntime_renames() -> None:
    nodes = {"/net/c/Conv", "/net/r/Relu"}
    producers = {"/net/r/Relu_output_0": "/net/r/Relu"}
    assert onnx_origin("/net/c/Conv_token_22", nodes, producers) == ["/net/c/Conv"]
    assert onnx_origin("/net/r/Relu_output_0_nchwc", nodes, producers) == ["/net/r/Relu"]
    assert onnx_origin("Transpose_token_35", nodes, producers) == []


@pytest.mark.parametrize("runtime, key", [("onnxruntime", "fp32"), ("openvino", "xml")])
def test_profile_rows_map_to_onnx_nodes_and_modules(model, runtime: str, key: str) -> None:
    options = {"threads": 1, "inference_precision": "f32"} if runtime == "openvino" else {"threads": 1}
    rows = profile_artifact(model[key], runtime, runner_settings(runtime, options), SHAPE, runs=5)
    compute = [r for r in rows if kind(r["op_type"])]
    assert {kind(r["op_type"]) for r in compute} >= {"conv", "matmul"}
    for row in compute:  # every convolution / matmul comes back to a node of the exported graph and its module
        # (OpenVINO names the layer producing a graph output after that output, e.g. `logits`: its ONNX node is
        # the tensor's producer)
        nodes = {n for name in row["onnx_nodes"] for n in onnx_origin(name, model["nodes"], model["producers"])}
        assert nodes, row
        assert {module_path(n) for n in nodes} <= model["modules"], row
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert all(r["time_ms"] >= 0 for r in rows) and rows == sorted(rows, key=lambda r: -r["time_ms"])


def test_diff_matches_layers_by_kind_and_position() -> None:
    def row(op: str, module: str, ms: float, order: int) -> dict:
        return {"layer": module, "module": module, "op_type": op, "time_ms": ms, "order": order}

    fp32 = [row("Conv", "net.a", 1.0, 0), row("Conv", "net.b", 2.0, 1), row("Gemm", "net.fc", 0.5, 2)]
    int8 = [row("QuantizeLinear", "normalize", 0.1, 0), row("QLinearConv", "net.a", 0.5, 1),
            row("QLinearConv", "net.b", 3.0, 2), row("QGemm", "net.fc", 0.5, 3)]
    changes = {c["layer"]: c for c in diff(fp32, int8)}
    assert changes["conv#2"]["delta_ms"] == pytest.approx(1.0) and changes["conv#2"]["ratio"] == pytest.approx(1.5)
    assert changes["conv#1"]["delta_ms"] == pytest.approx(-0.5)
    assert changes["other:normalize"]["a_ms"] == 0 and changes["other:normalize"]["ratio"] is None
    assert diff(fp32, int8)[0]["layer"] == "conv#2"  # the largest slow-down first


def test_cli_profile_against_int8_writes_json(model, tmp_path: Path) -> None:
    out = tmp_path / "profile.json"
    done = run_cli("profile", str(model["fp32"]), "--device", "x86-cpu", "--against", str(model["int8"]),
                   "--runs", "5", "--top", "5", "--json", str(out), timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["precision"] == "fp32" and report["against"]["precision"] == "int8"
    assert any(r["op_type"] == "QLinearConv" for r in report["against"]["layers"])
    assert {c["layer"] for c in report["against"]["diff"]} >= {"conv#1", "conv#2", "matmul#1"}
    assert "layer by layer" in done.stdout


def test_tensorrt_layer_profiler(tmp_path: Path) -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (needs an NVIDIA GPU)")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from edgekd.runtimes.tensorrt.exporter import build_engine

    torch.manual_seed(0)
    net = create("plain2", num_classes=4, in_channels=1).eval()
    onnx_path = export_onnx(net, [0.25], [0.5], torch.rand(2, *SHAPE), tmp_path / "m.onnx")
    engine = build_engine(onnx_path, tmp_path / "m.engine", precision="fp32")
    rows = profile_artifact(engine, "tensorrt", {}, SHAPE, runs=5)
    assert rows and all(r["time_ms"] >= 0 for r in rows)
