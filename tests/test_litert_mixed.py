"""``aiq-mixed``: LiteRT's full-integer model with ``ort-mixed``'s float nodes left float by ai_edge_quantizer.

Expectations come from outside the code under test: the ONNX→TFLite mapping of resnet8 checked by hand (op kinds
and weight shapes from the architecture, and the ``.tflite`` graph's order read off the converter's output), the
float op's weights compared with torch's own, and each op's tensor types read by LiteRT's interpreter (not by the
flatbuffer reader the engine uses).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from edgekd.config.quantize import QuantizeConfig
from edgekd.export.onnx import export_onnx
from edgekd.models import create
from edgekd.quantize.jobs import Int8Job
from edgekd.quantize.ort import prepare_float

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("litert_torch", "ai_edge_litert", "ai_edge_quantizer")),
    reason="LiteRT packages absent: pip install 'edgekd[litert]' (litert-torch, ai-edge-litert, ai-edge-quantizer)")

MEAN, STD = [0.5], [0.25]
WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")

# resnet8 (1 channel, widths 16/32/64, 10 classes) by hand: ONNX node → TFLite op kind and weight shape in TFLite's
# layout (CONV_2D (O, kh, kw, I); the 1-channel stem conv becomes DEPTHWISE_CONV_2D (1, kh, kw, O); FC (N, K))
RESNET8 = {
    "/net/conv1/Conv": ("DEPTHWISE_CONV_2D", (1, 3, 3, 16)),
    "/net/layer1/layer1.0/conv1/Conv": ("CONV_2D", (16, 3, 3, 16)),
    "/net/layer1/layer1.0/conv2/Conv": ("CONV_2D", (16, 3, 3, 16)),
    "/net/layer2/layer2.0/conv1/Conv": ("CONV_2D", (32, 3, 3, 16)),
    "/net/layer2/layer2.0/conv2/Conv": ("CONV_2D", (32, 3, 3, 32)),
    "/net/layer2/layer2.0/downsample/downsample.0/Conv": ("CONV_2D", (32, 1, 1, 16)),
    "/net/layer3/layer3.0/conv1/Conv": ("CONV_2D", (64, 3, 3, 32)),
    "/net/layer3/layer3.0/conv2/Conv": ("CONV_2D", (64, 3, 3, 64)),
    "/net/layer3/layer3.0/downsample/downsample.0/Conv": ("CONV_2D", (64, 1, 1, 32)),
    "/net/fc/Gemm": ("FULLY_CONNECTED", (10, 64)),
}


def _tflite(net: torch.nn.Module, path: Path, batch: int = 2, size: int = 8) -> Path:
    from edgekd.runtimes.litert.export import export_tflite

    return export_tflite(net, MEAN, STD, torch.rand(batch, 1, size, size), path)


@pytest.fixture(scope="module")
def resnet8(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("resnet8-mixed")
    files = {}
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = create("resnet8", num_classes=10, in_channels=1).eval()
        files[f"onnx{seed}"] = prepare_float(export_onnx(net, MEAN, STD, torch.rand(2, 1, 8, 8),
                                                         folder / f"m{seed}.onnx"), folder / f"prepared{seed}.onnx")
        if seed == 0:
            files["tflite"] = _tflite(net, folder / "m0.tflite")
    return files


def test_resnet8_nodes_map_to_the_ops_holding_their_weights(resnet8: dict[str, Path]) -> None:
    from edgekd.runtimes.litert.mixed import map_nodes

    graph = onnx.load(str(resnet8["onnx0"])).graph
    assert [n.name for n in graph.node if n.op_type in ("Conv", "Gemm")] == list(RESNET8)
    found, why = map_nodes(resnet8["onnx0"], resnet8["tflite"].read_bytes(), list(RESNET8))
    assert why == {}
    assert {node: (op.name, op.weights.shape if op.weights is not None else None) for node, op in found.items()} \
        == RESNET8
    assert len({op.index for op in found.values()}) == len(RESNET8)
    # the .tflite graph runs layer2's shortcut conv before the block's first conv; the ONNX graph after its second
    layer2 = "/net/layer2/layer2.0/"
    assert found[layer2 + "downsample/downsample.0/Conv"].index < found[layer2 + "conv1/Conv"].index


def test_nodes_without_their_weights_in_the_tflite_graph_are_not_guessed(resnet8: dict[str, Path]) -> None:
    from edgekd.runtimes.litert.mixed import map_nodes

    # another resnet8 (other weights, same shapes): no op holds its weights, although every shape is there
    found, why = map_nodes(resnet8["onnx1"], resnet8["tflite"].read_bytes(), [*RESNET8, "/net/nowhere/Conv"])
    assert found == {}
    assert why["/net/conv1/Conv"] == ("no CONV_2D/DEPTHWISE_CONV_2D op of the .tflite graph holds its weights "
                                      "(16, 1, 3, 3)")
    assert why["/net/fc/Gemm"] == "no FULLY_CONNECTED op of the .tflite graph holds its weights (10, 64)"
    assert why["/net/nowhere/Conv"] == "not a Conv/Gemm/MatMul node of the ONNX graph"


class Chain(torch.nn.Module):
    """Three 3x3 convs (the last two of one shape) and a linear head: a chain, so the k-th conv in run order is the
    k-th conv of the network."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.c3 = (torch.nn.Conv2d(i, 8, 3, padding=1) for i in (1, 8, 8))
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c3(torch.relu(self.c2(torch.relu(self.c1(x))))))
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("chain")
    torch.manual_seed(3)
    net = Chain().eval()
    return {"net": net, "folder": folder, "onnx": export_onnx(net, MEAN, STD, torch.rand(2, 1, 8, 8),
                                                              folder / "chain.onnx"),
            "tflite": _tflite(net, folder / "chain.tflite")}


def op_types(path: Path) -> list[dict[str, Any]]:
    """Per weight op of the model, in run order, as LiteRT's interpreter reports it (no delegate): its name, the
    types of its data input and weights, and its weights."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(path),
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    rows = []
    for op in interpreter._get_ops_details():
        if op["op_name"] in WEIGHT_OPS:
            data, weights = (tensors[i] for i in op["inputs"][:2])
            rows.append({"op": op["op_name"], "input": np.dtype(data["dtype"]).name,
                         "weights": np.dtype(weights["dtype"]).name,
                         "values": interpreter.get_tensor(weights["index"])})
    return rows


def test_the_excluded_conv_reads_float32_in_litert_and_the_others_int8(chain: dict[str, Any], tmp_path: Path) -> None:
    from edgekd.runtimes.litert.mixed import aiq_mixed

    conv3 = [n.name for n in onnx.load(str(prepare_float(chain["onnx"], tmp_path / "p.onnx"))).graph.node
             if n.op_type == "Conv"][2]
    calibration = np.random.default_rng(0).random((8, 1, 8, 8), dtype=np.float32)
    path, kept, unmapped = aiq_mixed(chain["tflite"], chain["onnx"], tmp_path / "mixed.tflite", [conv3], calibration,
                                     work_dir=tmp_path / "work")
    assert list(kept) == [conv3] and unmapped == {}
    rows = op_types(path)
    assert [(r["op"], r["input"], r["weights"]) for r in rows] == [
        ("DEPTHWISE_CONV_2D", "int8", "int8"), ("CONV_2D", "int8", "int8"), ("CONV_2D", "float32", "float32"),
        ("FULLY_CONNECTED", "int8", "int8")]
    # the float op is the network's third conv: torch's weights in TFLite's (O, kh, kw, I) layout
    expected = chain["net"].c3.weight.detach().permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(rows[2]["values"], expected, rtol=1e-6, atol=1e-7)
    assert not np.allclose(expected, chain["net"].c2.weight.detach().permute(0, 2, 3, 1).numpy())
    # the model runs, and with nothing excluded every weight op is int8
    from edgekd.runtime import open_runner

    with open_runner("litert", path) as runner:
        assert runner(calibration[:2]).shape == (2, 4)
        assert runner.describe()["inference_precision"] == "int8+f32"
    plain, _, _ = aiq_mixed(chain["tflite"], chain["onnx"], tmp_path / "plain.tflite", [], calibration,
                            work_dir=tmp_path / "work")
    assert {(r["input"], r["weights"]) for r in op_types(plain)} == {("int8", "int8")}
    with open_runner("litert", plain) as runner:
        assert runner.describe()["inference_precision"] == "int8"


def job(chain: dict[str, Any], shared: dict[Any, Any], float_nodes: int) -> Int8Job:
    rng = np.random.default_rng(0)
    cfg = QuantizeConfig(engines=["ort-mixed", "aiq-mixed"],
                         mixed={"float_nodes": float_nodes, "ranking_samples": 16, "sqnr_samples": 8})
    val = (rng.random((16, 1, 8, 8), dtype=np.float32), rng.integers(0, 4, 16))
    return Int8Job(runtime="litert", device="CPU", stem="student", cfg=cfg,
                   calibration=rng.random((16, 1, 8, 8), dtype=np.float32), nncf_target="CPU",
                   symmetric_activations=False, unmet=None,
                   fp32=lambda fmt: chain["onnx"] if fmt == "onnx" else chain["tflite"], val=lambda: val,
                   max_drop=lambda path: 0.01, qat_model=lambda: None, mean=MEAN, std=STD, example=None,
                   shared=shared)


@pytest.mark.parametrize("float_nodes", [1, 0])
def test_aiq_mixed_keeps_ort_mixeds_choice_in_float(chain: dict[str, Any], tmp_path: Path, float_nodes: int) -> None:
    from edgekd.quantize.mixed import mixed_build
    from edgekd.runtimes.litert.quantize import plan

    shared: dict[Any, Any] = {}
    builds, not_built = plan(job(chain, shared, float_nodes))
    assert not_built == {} and [b.name for b in builds] == ["student-litert-int8-aiq", "student-litert-int8-aiq-mixed"]
    mixed_entry = builds[1]
    assert mixed_entry.twin == "student-litert-int8-aiq"
    (tmp_path / "aiq-mixed").mkdir()
    path = mixed_entry.build(tmp_path / "aiq-mixed")
    assert path == tmp_path / "aiq-mixed" / "model.tflite"
    ort = mixed_build(job(chain, shared, float_nodes), "onnx", "onnxruntime", "model.onnx", "ort-mixed")
    (tmp_path / "ort-mixed").mkdir()
    ort.build(tmp_path / "ort-mixed")
    assert mixed_entry.info is not None and ort.info is not None
    info, ort_info = mixed_entry.info["mixed"], ort.info["mixed"]
    assert info["excluded"] == ort_info["excluded"] == info["chosen_by"]["excluded"]
    assert info["k"] == float_nodes and info["unmapped"] == {}
    assert info["sensitivity"] == ort_info["sensitivity"]  # one ranking, measured once, read by both
    assert list(info["ops"]) == info["excluded"]
    floats = [r for r in op_types(path) if r["input"] == "float32"]
    assert len(floats) == float_nodes
    assert [r["op"] for r in floats] == [op["op"] for op in info["ops"].values()]
