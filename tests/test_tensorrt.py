"""TensorRT: the graph checks and the quantization made for it (run everywhere), and engines (run where TensorRT >= 10
and a CUDA device are present; skipped elsewhere with the reason the builder itself gives)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from edgekd.errors import UserError
from edgekd.export import check_parity, export_onnx
from edgekd.models import create
from edgekd.quantize import ort_static_quantize
from edgekd.runtime import open_runner
from edgekd.runtimes.tensorrt.engine_precision import engine_precision_problem
from edgekd.runtimes.tensorrt.exporter import build_engine, inspect_onnx_precision
from edgekd.runtimes.tensorrt.runner import inspector_layers, layer_precisions, precision_counts, tensorrt_problem

MEAN, STD = [0.5, 0.25], [0.2, 0.4]
PROBLEM = tensorrt_problem()
needs_tensorrt = pytest.mark.skipif(PROBLEM is not None, reason=str(PROBLEM))


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(2).random((16, 2, 8, 8), dtype=np.float32)


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(2)
    net = create("plain2", num_classes=4, in_channels=2).eval()
    return export_onnx(net, MEAN, STD, torch.rand(3, 2, 8, 8), tmp_path_factory.mktemp("trt") / "model.onnx")


@pytest.fixture(scope="module")
def qdq(onnx_path: Path, x: np.ndarray) -> dict[str, Path]:
    """Symmetric QDQ graphs: ONNX Runtime's default (biases to int32) and the TensorRT one (biases left float)."""
    return {bias: ort_static_quantize(onnx_path, onnx_path.with_name(f"qdq-{bias}.onnx"), x,
                                      symmetric_activations=True, quantize_bias=bias == "int32")
            for bias in ("int32", "float")}


def dequantize_input_types(path: Path) -> list[int]:
    """The element type of every DequantizeLinear input, read with onnx's own shape inference."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    types = {i.name: i.data_type for i in model.graph.initializer}
    types.update({v.name: v.type.tensor_type.elem_type for v in [*model.graph.value_info, *model.graph.input]})
    return [types[n.input[0]] for n in model.graph.node if n.op_type == "DequantizeLinear"]


def test_ort_quantization_for_tensorrt_leaves_no_int32_dequantize(qdq: dict[str, Path]) -> None:
    default, for_trt = dequantize_input_types(qdq["int32"]), dequantize_input_types(qdq["float"])
    assert TensorProto.INT32 in default  # ONNX Runtime's default: the conv biases as int32 behind a DequantizeLinear
    assert for_trt and set(for_trt) == {TensorProto.INT8}
    assert len(default) - default.count(TensorProto.INT32) == len(for_trt)  # only the bias DQs are gone
    assert inspect_onnx_precision(qdq["float"]) == {"qdq": True, "symmetric": True, "fp16": False,
                                                    "int32_dequantize": []}
    assert len(inspect_onnx_precision(qdq["int32"])["int32_dequantize"]) == default.count(TensorProto.INT32)


def test_ort_quantized_graph_with_float_biases_still_agrees_with_its_fp32_source(onnx_path, qdq, x) -> None:
    with open_runner("onnxruntime", onnx_path) as fp32, open_runner("onnxruntime", qdq["float"]) as int8:
        parity = check_parity(fp32, int8, x, atol=float("inf"), min_top1_agreement=0.0)
    assert parity["top1_agreement"] >= 0.75  # the same tolerance the TensorRT int8 engine is held to


def int32_dequantize_graph(path: Path, *, constant_node: bool) -> Path:
    """y = Conv(DQ(Q(x)), DQ(w_int8)) + DQ(b_int32): an int32 bias DQ as ONNX Runtime writes it, by hand; the bias
    is an initializer or (``constant_node``) the output of a Constant node."""
    zero8 = numpy_helper.from_array(np.zeros((), np.int8), "zero8")
    scale = numpy_helper.from_array(np.array(0.05, np.float32), "scale")
    weight = numpy_helper.from_array(np.ones((3, 2, 1, 1), np.int8), "w_q")
    bias = numpy_helper.from_array(np.array([1, -2, 3], np.int32), "b_q")
    bias_scale = numpy_helper.from_array(np.array(0.0025, np.float32), "b_scale")
    zero32 = numpy_helper.from_array(np.zeros((), np.int32), "zero32")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "scale", "zero8"], ["x_q"], name="q_x"),
        helper.make_node("DequantizeLinear", ["x_q", "scale", "zero8"], ["x_dq"], name="dq_x"),
        helper.make_node("DequantizeLinear", ["w_q", "scale", "zero8"], ["w"], name="dq_w"),
        helper.make_node("DequantizeLinear", ["b_q", "b_scale", "zero32"], ["b"], name="dq_bias"),
        helper.make_node("Conv", ["x_dq", "w", "b"], ["y"], name="conv"),
    ]
    inits = [zero8, scale, weight, bias_scale, zero32]
    if constant_node:
        nodes.insert(0, helper.make_node("Constant", [], ["b_q"], value=bias, name="bias_const"))
    else:
        inits.append(bias)
    graph = helper.make_graph(nodes, "int32_dq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("constant_node", [False, True])
def test_graph_check_rejects_an_int32_dequantize_before_any_tensorrt_call(tmp_path: Path, constant_node: bool) -> None:
    graph = int32_dequantize_graph(tmp_path / "m.onnx", constant_node=constant_node)
    import onnxruntime as ort  # the hand-built graph is valid ONNX that ONNX Runtime runs ...

    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": np.zeros((1, 2, 4, 4), np.float32)})
    assert np.allclose(y[0, :, 0, 0], np.array([1, -2, 3]) * 0.0025)  # conv of zeros = the dequantized bias
    assert inspect_onnx_precision(graph)["int32_dequantize"] == ["dq_bias"]
    with pytest.raises(UserError, match=r"DequantizeLinear node\(s\) take int32 input \(dq_bias: quantized biases\); "
                                        r"quantize with .*quantize_bias=False") as refused:
        build_engine(graph, tmp_path / "m.engine", precision="int8")  # ... that TensorRT cannot parse
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "m.engine").exists()


#: engine inspector JSON as TensorRT 10 writes it for a DETAILED engine (trimmed to the keys read): an int8
#: convolution fed by a reformat from the fp32 input, a shape layer on int64, and an fp16 pooling layer
INSPECTOR_JSON = """{"Layers": [
 {"Name": "reformat_in", "LayerType": "Reformat",
  "Inputs": [{"Name": "pixels", "Format/Datatype": "Row major linear FP32"}],
  "Outputs": [{"Name": "q", "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}]},
 {"Name": "conv1", "LayerType": "CaskConvolution", "TacticName": "sm87_xmma_fprop_implicit_gemm_interleaved_i8i8",
  "Inputs": [{"Name": "q", "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}],
  "Outputs": [{"Name": "c", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}]},
 {"Name": "shape", "LayerType": "Shuffle",
  "Inputs": [{"Name": "s", "Format/Datatype": "Row major linear Int64 format"}],
  "Outputs": [{"Name": "t", "Format/Datatype": "Row major linear Int64 format"}]},
 {"Name": "pool", "LayerType": "CaskPooling",
  "Inputs": [{"Name": "c", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
  "Outputs": [{"Name": "logits", "Format/Datatype": "Row major linear FP32 format (kLINEAR)"}]}],
 "Bindings": ["pixels", "logits"]}"""


def test_inspector_layers_read_each_layers_data_types() -> None:
    layers = inspector_layers(INSPECTOR_JSON)
    assert [(layer["name"], layer["inputs"], layer["outputs"]) for layer in layers] == [
        ("reformat_in", ["fp32"], ["int8"]), ("conv1", ["int8"], ["fp16"]), ("shape", [], []),
        ("pool", ["fp16"], ["fp32"])]
    assert layers[1]["type"] == "CaskConvolution" and layers[1]["tactic"].endswith("i8i8")
    # a layer counts under the narrowest type it reads; integer shape layers are not counted
    assert precision_counts(layers) == {"fp32": 1, "int8": 1, "fp16": 1}


#: the same engine as TensorRT 11 describes it: the "Format/Datatype" string split into "Format" (the layout) and
#: "DataType" (the element type, as the I/O tensors' "DataType": "Float" of NVIDIA's "Migrating IEngineInspector Usage
#: from TensorRT 10.x to 11.x"), and "Bindings" replaced by "I/O Tensors"
INSPECTOR_JSON_11 = """{"Layers": [
 {"Name": "reformat_in", "LayerType": "Reformat",
  "Inputs": [{"Name": "pixels", "Format": "Row major linear FP32 format (kLINEAR)", "DataType": "Float"}],
  "Outputs": [{"Name": "q", "Format": "Thirty-two wide channel vectorized row major format (kCHW32)",
               "DataType": "Int8"}]},
 {"Name": "conv1", "LayerType": "CaskConvolution", "TacticName": "sm87_xmma_fprop_implicit_gemm_interleaved_i8i8",
  "Inputs": [{"Name": "q", "Format": "Thirty-two wide channel vectorized row major format (kCHW32)",
              "DataType": "Int8"}],
  "Outputs": [{"Name": "c", "Format": "Channel major format where channel % 8 == 0 (kHWC8)", "DataType": "Half"}]},
 {"Name": "shape", "LayerType": "Shuffle",
  "Inputs": [{"Name": "s", "Format": "Row major linear format (kLINEAR)", "DataType": "Int64"}],
  "Outputs": [{"Name": "t", "Format": "Row major linear format (kLINEAR)", "DataType": "Int64"}]},
 {"Name": "pool", "LayerType": "CaskPooling",
  "Inputs": [{"Name": "c", "Format": "Channel major format where channel % 8 == 0 (kHWC8)", "DataType": "Half"}],
  "Outputs": [{"Name": "logits", "Format": "Row major linear format (kLINEAR)", "DataType": "Float"}]}],
 "I/O Tensors": [{"Name": "pixels", "IOMode": "Input", "DataType": "Float"},
                 {"Name": "logits", "IOMode": "Output", "DataType": "Float"}]}"""


def test_inspector_layers_read_tensorrt_11s_split_data_type() -> None:
    layers = inspector_layers(INSPECTOR_JSON_11)
    assert [(layer["name"], layer["inputs"], layer["outputs"]) for layer in layers] == [
        ("reformat_in", ["fp32"], ["int8"]), ("conv1", ["int8"], ["fp16"]), ("shape", [], []),
        ("pool", ["fp16"], ["fp32"])]
    assert precision_counts(layers) == {"fp32": 1, "int8": 1, "fp16": 1}
    # the layout alone names no type in TensorRT 11 ("Row major linear format"): the DataType key is what is read
    assert inspector_layers('{"Layers": [{"Name": "x", "Inputs": [{"Format": "Row major linear format (kLINEAR)", '
                            '"DataType": "BFloat16"}], "Outputs": []}]}')[0]["inputs"] == ["bf16"]


def _layers(*convs: tuple[list[str], list[str]], kind: str = "CaskConvolution") -> list[dict]:
    return [{"name": f"conv{i}", "type": kind, "inputs": ins, "outputs": outs, "tactic": ""}
            for i, (ins, outs) in enumerate(convs)]


@pytest.mark.parametrize("layers, precision, problem", [
    (inspector_layers(INSPECTOR_JSON), "int8", None),  # conv1 reads int8
    (inspector_layers(INSPECTOR_JSON_11), "int8", None),
    (inspector_layers(INSPECTOR_JSON), "fp16", "TensorRT built no fp16 layer: its 1 compute layer(s) read int8"),
    (inspector_layers(INSPECTOR_JSON), "fp32", "the fp32 engine reads reduced-precision data in 2 layer(s) (conv1, "
                                               "pool)"),
    # weak typing kept every convolution in fp32: an "fp16" engine in name only
    (_layers((["fp32"], ["fp32"]), (["fp32"], ["fp32"])), "fp16",
     "TensorRT built no fp16 layer: its 2 compute layer(s) read fp32"),
    (_layers((["fp32"], ["fp16"]), (["fp16"], ["fp32"])), "fp16", None),
    (_layers((["fp32"], ["fp32"])), "fp32", None),
    # one fused Myelin graph names no convolution: every typed layer counts
    (_layers((["int8"], ["fp32"]), kind="Myelin"), "int8", None),
    (_layers(([], []), ([], [])), "fp16", "the engine inspector reported no data type for any of its 2 layer(s)"),
])
def test_engine_precision_check(layers: list[dict], precision: str, problem: str | None) -> None:
    found = engine_precision_problem(layers, precision)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem), found


# -- where TensorRT runs --------------------------------------------------------------------------------------------

def engine_layers(engine_path: Path) -> list[dict]:
    import tensorrt as trt

    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(engine_path.read_bytes())
    return layer_precisions(engine)


def convolutions(layers: list[dict]) -> list[dict]:
    return [layer for layer in layers if "onvolution" in layer["type"]]


@needs_tensorrt
def test_fp32_engine_computes_in_fp32_without_tf32(onnx_path: Path, tmp_path: Path) -> None:
    layers = engine_layers(build_engine(onnx_path, tmp_path / "m.engine", precision="fp32"))
    assert convolutions(layers), layers  # DETAILED verbosity: the inspector reports types and tactics
    assert set(precision_counts(layers)) == {"fp32"}, layers
    # TF32 shows only in the kernel chosen (e.g. sm80_xmma_fprop_implicit_gemm_tf32f32_...): none may be one
    assert not [layer["tactic"] for layer in layers if "tf32" in layer["tactic"].lower()]


@needs_tensorrt
def test_fp16_engine_runs_its_convolutions_in_fp16(onnx_path: Path, tmp_path: Path) -> None:
    if int(__import__("tensorrt").__version__.split(".")[0]) >= 11:
        pytest.importorskip("onnxconverter_common", reason="TensorRT 11 builds fp16 from an fp16 graph only")
    layers = engine_layers(build_engine(onnx_path, tmp_path / "m.engine", precision="fp16"))
    assert any("fp16" in c["inputs"] + c["outputs"] for c in convolutions(layers)), layers


@needs_tensorrt
def test_int8_engine_runs_its_convolutions_on_int8_inputs(qdq: dict[str, Path], tmp_path: Path) -> None:
    layers = engine_layers(build_engine(qdq["float"], tmp_path / "m.engine", precision="int8"))
    assert any("int8" in c["inputs"] for c in convolutions(layers)), layers


@needs_tensorrt
def test_static_batch_engine_takes_exactly_its_batch(tmp_path: Path, x: np.ndarray) -> None:
    torch.manual_seed(3)
    net = create("plain2", num_classes=4, in_channels=2).eval()
    source = export_onnx(net, MEAN, STD, torch.rand(4, 2, 8, 8), tmp_path / "static.onnx", dynamic_batch=False)
    engine = build_engine(source, tmp_path / "static.engine", precision="fp32")
    with open_runner("onnxruntime", source) as reference, open_runner("tensorrt", engine) as runner:
        assert runner.input_shape == (4, 2, 8, 8) and runner.describe()["max_batch"] == 4
        assert runner.describe()["layer_precisions"].keys() == {"fp32"}
        result = check_parity(reference, runner, x[:10], atol=1e-3, min_top1_agreement=1.0, batch_size=5)
        with pytest.raises(UserError, match="does not match"):
            runner(x[:3])
    assert result["passed"], result


@needs_tensorrt
def test_a_corrupt_timing_cache_is_replaced_by_the_builders_own(onnx_path: Path, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"not a TensorRT timing cache")
    with caplog.at_level(logging.WARNING, logger="edgekd.runtimes.tensorrt.exporter"):
        build_engine(onnx_path, tmp_path / "a.engine", timing_cache=cache)
    assert "refused this timing cache (unreadable)" in caplog.text
    assert cache.read_bytes() != b"not a TensorRT timing cache" and cache.stat().st_size > 0
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgekd.runtimes.tensorrt.exporter"):
        build_engine(onnx_path, tmp_path / "b.engine", timing_cache=cache)
    assert "refused" not in caplog.text  # the cache written back is one TensorRT takes


@needs_tensorrt
def test_a_foreign_timing_cache_is_never_written_back_unchanged(onnx_path: Path, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorrt as trt

    torch.manual_seed(4)
    other = export_onnx(create("plain2", num_classes=7, in_channels=2).eval(), MEAN, STD, torch.rand(2, 2, 8, 8),
                        tmp_path / "other.onnx")
    cache = tmp_path / "timing.cache"
    build_engine(other, tmp_path / "other.engine", timing_cache=cache)  # a valid cache of another network
    foreign = cache.read_bytes()
    set_cache, calls = trt.IBuilderConfig.set_timing_cache, []

    def refuse_first(config, timing_cache, ignore_mismatch):  # what TensorRT answers for another GPU's cache
        calls.append(ignore_mismatch)
        return False if len(calls) == 1 else set_cache(config, timing_cache, ignore_mismatch)

    monkeypatch.setattr(trt.IBuilderConfig, "set_timing_cache", refuse_first)
    with caplog.at_level(logging.WARNING, logger="edgekd.runtimes.tensorrt.exporter"):
        build_engine(onnx_path, tmp_path / "m.engine", timing_cache=cache)
    assert calls == [False, False]  # mismatches are never ignored; then a fresh cache
    assert "made by another GPU or TensorRT version" in caplog.text
    assert hashlib.sha256(cache.read_bytes()).digest() != hashlib.sha256(foreign).digest()


def test_inspector_reads_tensorrt_10_and_11_datatype_keys() -> None:
    """TensorRT 10 describes a tensor in one ``Format/Datatype`` string; TensorRT 11 splits it into ``Format`` and
    ``DataType`` (11.0 migration guide), read whatever the key's case (here ``Datatype``). Both give the same
    layers."""
    import json

    trt10 = {"Layers": [{"Name": "conv", "LayerType": "CaskConvolution", "TacticName": "sm80_xmma",
                         "Inputs": [{"Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
                         "Outputs": [{"Format/Datatype": "Row major linear FP32"}]}]}
    trt11 = {"Layers": [{"Name": "conv", "LayerType": "CaskConvolution", "TacticName": "sm80_xmma",
                         "Inputs": [{"Format": "Channel major format where channel % 8 == 0", "Datatype": "Half"}],
                         "Outputs": [{"Format": "Row major linear", "Datatype": "FP32"}]}]}
    expected = [{"name": "conv", "type": "CaskConvolution", "inputs": ["fp16"], "outputs": ["fp32"],
                 "tactic": "sm80_xmma"}]
    assert inspector_layers(json.dumps(trt10)) == expected
    assert inspector_layers(json.dumps(trt11)) == expected
    assert precision_counts(expected) == {"fp16": 1}


@needs_tensorrt
def test_the_device_runner_measures_an_engine_like_any_artifact(onnx_path: Path, tmp_path: Path,
                                                                x: np.ndarray) -> None:
    """The TensorRT session of the device runner (copied into its own folder, run in a child process): timed calls
    with host↔device copies, its output equal to the TensorRT runner's, the engine's layer precisions described."""
    import importlib

    from edgekd.bench import device_runner as dr
    from edgekd.bench.measure import LocalTarget, bench_artifact
    from edgekd.config import BenchConfig

    engine = build_engine(onnx_path, tmp_path / "m.engine", precision="fp32")
    cfg = BenchConfig(warmup=2, runs=10, max_seconds=5, batch_sizes=[4])
    metrics = bench_artifact(engine, "tensorrt", {"device": "cuda:0"}, cfg, LocalTarget(), sample_shape=[2, 8, 8])
    assert metrics["latency_ms"]["runs"] >= 10 and [b["batch_size"] for b in metrics["batches"]] == [1, 4]
    assert metrics["batches"][1]["output_shape"] == [4, 4]
    assert metrics["compute"]["runtime"] == "tensorrt" and metrics["compute"]["layer_precisions"].keys() == {"fp32"}
    module = importlib.import_module("edgekd.runtimes.tensorrt.session")
    session = dr.open_session(module, str(engine), {"device": "cuda:0"}, shape=[4, 2, 8, 8])
    call, output, _ = session.bind(x[:4])
    call()
    with open_runner("tensorrt", engine) as runner:
        np.testing.assert_allclose(output(), runner(x[:4]), rtol=1e-4, atol=1e-4)


@needs_tensorrt
def test_engine_is_built_on_the_device_named_and_a_missing_one_is_refused(onnx_path: Path, tmp_path: Path) -> None:
    count = torch.cuda.device_count()
    last = f"cuda:{count - 1}"
    engine = build_engine(onnx_path, tmp_path / "last.engine", precision="fp32", device=last)
    with open_runner("tensorrt", engine, device=last) as runner:
        assert runner.describe()["device"] == last
    with pytest.raises(UserError, match=f"device 'cuda:{count}': this host has {count} CUDA device"):
        build_engine(onnx_path, tmp_path / "none.engine", precision="fp32", device=f"cuda:{count}")
    assert not (tmp_path / "none.engine").exists()
