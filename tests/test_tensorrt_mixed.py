"""``trt-mixed``: TensorRT's INT8 engine with ``ort-mixed``'s float nodes left without Q/DQ and pinned to fp32.

What needs no TensorRT runs everywhere: the Q/DQ graph (read with onnx: the excluded conv's weights are float, every
other conv reads DequantizeLinear outputs for its data and its weights), the check of the engine
inspector's layers against the float nodes (on inspector layers written by hand), and the plan. The engine itself
is built and its layers read with TensorRT's engine inspector where TensorRT >= 10 and a CUDA device are present;
elsewhere those tests skip with the reason the builder gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from edgekd.config.quantize import QuantizeConfig
from edgekd.errors import UserError
from edgekd.export.onnx import export_onnx
from edgekd.quantize.jobs import Int8Job
from edgekd.quantize.ort import prepare_float
from edgekd.runtimes.tensorrt.engine_precision import float_layer_problem
from edgekd.runtimes.tensorrt.exporter import build_engine, inspect_onnx_precision
from edgekd.runtimes.tensorrt.quantize import plan, symmetric_qdq
from edgekd.runtimes.tensorrt.runner import tensorrt_problem
from tests.test_sensitivity import cnn

PROBLEM = tensorrt_problem()
needs_tensorrt = pytest.mark.skipif(PROBLEM is not None, reason=str(PROBLEM))


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The fp32 ONNX model of a 3-conv CNN (1→8→8→8 channels), its conv node names, and its symmetric Q/DQ graph
    with the second conv left float."""
    folder = tmp_path_factory.mktemp("trt-mixed")
    torch.manual_seed(4)
    fp32 = export_onnx(cnn(8).eval(), [0.4], [0.3], torch.rand(2, 1, 8, 8), folder / "fp32.onnx")
    convs = [n.name for n in onnx.load(str(prepare_float(fp32, folder / "prepared.onnx"))).graph.node
             if n.op_type == "Conv"]
    calibration = np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32)
    qdq = symmetric_qdq(fp32, folder / "qdq.onnx", calibration, "minmax", [convs[1]])
    return {"fp32": fp32, "convs": convs, "qdq": qdq, "calibration": calibration}


def test_the_float_node_has_no_qdq_and_the_graph_stays_fit_for_tensorrt(graphs: dict[str, Any]) -> None:
    graph = onnx.load(str(graphs["qdq"])).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    convs = {n.name: n for n in graph.node if n.op_type == "Conv"}
    assert sorted(convs) == sorted(graphs["convs"])
    reads_dq = {name: [i in dequantized for i in node.input[:2]] for name, node in convs.items()}
    first, second, third = graphs["convs"]
    # the float conv's weights are a float32 initializer; its data input is the first conv's output, which that
    # quantized conv writes through its own Q/DQ pair (as ONNX Runtime runs ort-mixed's graph)
    assert reads_dq == {first: [True, True], second: [True, False], third: [True, True]}
    weights = {i.name: i for i in graph.initializer}[convs[second].input[1]]
    assert weights.data_type == onnx.TensorProto.FLOAT and list(weights.dims) == [8, 8, 3, 3]
    assert inspect_onnx_precision(graphs["qdq"]) == {"qdq": True, "symmetric": True, "fp16": False,
                                                     "int32_dequantize": []}


def test_float_layers_are_checked_in_the_inspectors_layers() -> None:
    conv, other = "/net/net.2/Conv", "/net/net.4/Conv"
    layers = [{"name": f"{conv} + /net/net.3/Relu", "type": "CaskConvolution", "inputs": ["fp32"],
               "outputs": ["fp32"], "tactic": ""},
              {"name": f"{other} + /net/net.5/Relu", "type": "CaskConvolution", "inputs": ["int8"],
               "outputs": ["int8"], "tactic": ""}]
    assert float_layer_problem(layers, [conv]) is None
    assert float_layer_problem(layers, [other]) == \
        f"the float node(s) {other} (int8) do not compute in fp32 in the engine"
    # a float layer into which TensorRT fused the next node's quantizer still computes in fp32
    assert float_layer_problem([{**layers[0], "outputs": ["int8"]}], [conv]) is None
    assert float_layer_problem([{**layers[0], "inputs": ["fp16", "fp32"]}], [conv]) is not None
    # a name that only contains the node's name is another node
    assert float_layer_problem([{**layers[0], "name": conv + "_1"}], [conv]) == (
        f"no layer of the engine is named after the float node(s) {conv}, so their precision cannot be shown")


def test_float_layers_are_for_int8_engines_only(graphs: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(UserError, match="float_layers are for int8 engines"):
        build_engine(graphs["fp32"], tmp_path / "model.engine", precision="fp32", float_layers=[graphs["convs"][1]])


def job(engines: list[str], unmet: str | None) -> Int8Job:
    cfg = QuantizeConfig(engines=engines, mixed={"float_nodes": 1})
    return Int8Job(runtime="tensorrt", device="cuda:0", stem="student", cfg=cfg,
                   calibration=np.zeros((1, 1, 8, 8), np.float32), nncf_target="ANY", symmetric_activations=True,
                   unmet=unmet, fp32=lambda fmt: Path("unused"), val=lambda: (np.zeros(0), np.zeros(0)),
                   max_drop=lambda path: 0.01, qat_model=lambda: None, mean=[0.4], std=[0.3], example=None)


def test_the_plan_asks_for_trt_mixed_only_when_the_recipe_does() -> None:
    builds, not_built = plan(job(["ort", "trt-mixed"], None))
    assert [(b.name, b.twin) for b in builds] == [("student-tensorrt-int8-ort", None),
                                                  ("student-tensorrt-int8-trt-mixed", "student-tensorrt-int8-ort")]
    assert not_built == {}
    assert [b.name for b in plan(job(["ort"], None))[0]] == ["student-tensorrt-int8-ort"]
    assert plan(job(["trt-mixed"], "no GPU")) == ([], {"student-tensorrt-int8-ort": "no GPU",
                                                       "student-tensorrt-int8-trt-mixed": "no GPU"})


@needs_tensorrt
def test_the_engine_computes_the_float_node_in_fp32(graphs: dict[str, Any], tmp_path: Path) -> None:
    import tensorrt as trt

    from edgekd.runtimes.tensorrt.runner import layer_precisions

    first, second, third = graphs["convs"]
    engine_path = build_engine(graphs["qdq"], tmp_path / "model.engine", precision="int8", float_layers=[second])
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(engine_path.read_bytes())
    layers = layer_precisions(engine)

    def inputs_of(node: str) -> set[str]:
        return {t for layer in layers if node in (p.strip() for p in layer["name"].split(" + "))
                for t in layer["inputs"]}

    assert inputs_of(second) == {"fp32"}
    assert "int8" in inputs_of(first) | inputs_of(third)
