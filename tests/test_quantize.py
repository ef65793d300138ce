"""INT8 quantizers (ONNX Runtime static PTQ, NNCF PTQ with and without accuracy control) on a tiny trained model."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from edgekd.errors import UserError
from edgekd.export import export_onnx
from edgekd.models import create
from edgekd.quantize import (
    nncf_ptq,
    nncf_ptq_with_accuracy_control,
    nncf_qat_prepare,
    ort_static_quantize,
    strip_qat_to_onnx,
    top1_validation,
)
from edgekd.quantize.qdq_fold import fold_batch_norms, fold_weight_quantizers, quantize_linear
from edgekd.runtime import evaluate_accuracy, open_runner, predict
from edgekd.runtimes.openvino.exporter import export_openvino

MEAN, STD = [0.4], [0.3]
CLASSES = 4


def separable(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """1×8×8 images in [0, 1]: dim noise plus a bright 4×4 quadrant whose position is the class."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    x = rng.random((n, 1, 8, 8), dtype=np.float32) * 0.4
    for i, label in enumerate(y):
        r, c = divmod(int(label), 2)
        x[i, 0, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += 0.6
    return x, y


@pytest.fixture(scope="module")
def data() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {"train": separable(512, 0), "val": separable(128, 1), "test": separable(256, 2)}


@pytest.fixture(scope="module")
def fp32(data, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    torch.manual_seed(0)
    net = create("resnet8", num_classes=CLASSES, in_channels=1)
    x, y = (torch.from_numpy(a) for a in data["train"])
    optimiser = torch.optim.Adam(net.parameters(), lr=0.02)
    net.train()
    for step in range(60):
        idx = torch.arange(step * 64, step * 64 + 64) % len(x)
        loss = torch.nn.functional.cross_entropy(net((x[idx] - MEAN[0]) / STD[0]), y[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    root = tmp_path_factory.mktemp("fp32")
    onnx_path = export_onnx(net, MEAN, STD, torch.rand(1, 1, 8, 8), root / "model.onnx")
    return {"onnx": onnx_path, "xml": export_openvino(onnx_path, root / "model.xml", compress_to_fp16=False),
            "net": net.eval()}


def fp32_logits(fp32: dict[str, Path], x: np.ndarray) -> np.ndarray:
    with open_runner("onnxruntime", fp32["onnx"]) as runner:
        return predict(runner, x, 64)


def test_the_fp32_model_learnt_the_task(fp32, data) -> None:
    with open_runner("onnxruntime", fp32["onnx"]) as runner:
        assert evaluate_accuracy(runner, *data["test"], batch_size=64) >= 0.95


def agreement_and_accuracy(runtime: str, path: Path, fp32: dict[str, Path], data) -> tuple[float, float]:
    x, y = data["test"]
    with open_runner(runtime, path) as runner:
        logits = predict(runner, x, 64)
    return float((logits.argmax(1) == fp32_logits(fp32, x).argmax(1)).mean()), float((logits.argmax(1) == y).mean())


def onnx_ops(path: Path) -> Counter[str]:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def activation_zero_points(path: Path) -> list[np.ndarray]:
    """Zero points of the QuantizeLinear nodes (ONNX Runtime quantizes only activations with QuantizeLinear)."""
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]


@pytest.mark.parametrize("method, symmetric", [("minmax", True), ("minmax", False), ("entropy", False),
                                               ("percentile", True)])
def test_ort_static_quantization(fp32, data, tmp_path: Path, method: str, symmetric: bool) -> None:
    out = ort_static_quantize(fp32["onnx"], tmp_path / "int8.onnx", data["train"][0][:64],
                              symmetric_activations=symmetric, calibrate_method=method)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8.onnx"]
    ops = onnx_ops(out)
    assert ops["QuantizeLinear"] >= 3 and ops["DequantizeLinear"] >= ops["QuantizeLinear"]
    weights = [i for i in onnx.load(str(out)).graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert max(numpy_helper.to_array(w).size for w in weights) >= 16 * 16 * 9  # the conv weights are int8
    assert out.stat().st_size < 0.6 * fp32["onnx"].stat().st_size
    zero_points = activation_zero_points(out)
    assert all(zp.dtype == (np.int8 if symmetric else np.uint8) for zp in zero_points)
    assert all(np.all(zp == 0) for zp in zero_points) == symmetric
    agreement, accuracy = agreement_and_accuracy("onnxruntime", out, fp32, data)
    assert agreement >= 0.95 and accuracy >= 0.9


def optimised_ops(path: Path) -> Counter[str]:
    """Op types of the graph ONNX Runtime's CPU provider runs, after its QDQ fusions."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(path.with_name(f"{path.stem}-optimised.onnx"))
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return onnx_ops(Path(options.optimized_model_filepath))


def test_every_conv_of_a_residual_network_runs_as_an_int8_kernel(fp32, data, tmp_path: Path) -> None:
    """ResNet-8's skip connections give tensors two consumers; with QInt8 activations ONNX Runtime's S8→U8 rewrite
    skips those, and the convs beside them stayed DequantizeLinear → float Conv → QuantizeLinear (3 of 9 fused, with
    onnxruntime 1.32); QUInt8 activations need no rewrite."""
    convs = onnx_ops(fp32["onnx"])["Conv"]
    out = ort_static_quantize(fp32["onnx"], tmp_path / "int8.onnx", data["train"][0][:64], symmetric_activations=False)
    ops = optimised_ops(out)
    assert convs == 9 and ops["QLinearConv"] == convs and ops["Conv"] == 0


def test_nncf_ptq_onnx_gives_a_qdq_graph_that_onnxruntime_runs(fp32, data, tmp_path: Path) -> None:
    out = nncf_ptq(fp32["onnx"], tmp_path / "int8.onnx", data["train"][0], subset_size=64)
    ops = onnx_ops(out)
    assert ops["QuantizeLinear"] >= 3 and ops["DequantizeLinear"] >= ops["QuantizeLinear"]
    assert not any(n.domain == "org.openvinotoolkit" for n in onnx.load(str(out)).graph.node)
    assert out.stat().st_size < 0.6 * fp32["onnx"].stat().st_size
    agreement, accuracy = agreement_and_accuracy("onnxruntime", out, fp32, data)
    assert agreement >= 0.95 and accuracy >= 0.9


def test_nncf_ptq_openvino_gives_fakequantize_and_int8_weights(fp32, data, tmp_path: Path) -> None:
    import openvino as ov

    out = nncf_ptq(fp32["xml"], tmp_path / "int8.xml", data["train"][0], subset_size=64, preset="mixed")
    model = ov.Core().read_model(str(out))
    assert sum(op.get_type_name() == "FakeQuantize" for op in model.get_ordered_ops()) >= 3
    int8_consts = [op for op in model.get_ordered_ops()
                   if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8]
    assert int8_consts, "the conv weights are stored as int8"
    assert out.with_suffix(".bin").stat().st_size < 0.6 * fp32["xml"].with_suffix(".bin").stat().st_size
    agreement, accuracy = agreement_and_accuracy("openvino", out, fp32, data)
    assert agreement >= 0.95 and accuracy >= 0.9


def test_nncf_accuracy_control_keeps_the_drop_within_budget(fp32, data, tmp_path: Path, monkeypatch) -> None:
    import edgekd.quantize.nncf_quantize as module

    calls = []
    monkeypatch.setattr(module, "top1_validation", lambda *a: calls.append(1) or top1_validation(*a))
    x_val, y_val = data["val"]
    out = nncf_ptq_with_accuracy_control(fp32["xml"], tmp_path / "int8.xml", data["train"][0], x_val, y_val,
                                         max_drop=0.01, subset_size=64)
    accuracies = {}
    for name, path in (("fp32", fp32["xml"]), ("int8", out)):
        with open_runner("openvino", path) as runner:
            accuracies[name] = evaluate_accuracy(runner, x_val, y_val, batch_size=64)
    assert len(calls) >= 2  # NNCF scored the fp32 and the int8 model with edgekd's validation function
    assert accuracies["fp32"] - accuracies["int8"] <= 0.01 + 1e-9


def test_quantizers_reject_bad_inputs(fp32, data, tmp_path: Path) -> None:
    x = data["train"][0][:8]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ort_static_quantize(fp32["onnx"], tmp_path / "q.onnx", (x - 0.5) / 0.2, symmetric_activations=True)
    with pytest.raises(ValueError, match="float32"):
        nncf_ptq(fp32["onnx"], tmp_path / "q.onnx", x.astype(np.float64))
    with pytest.raises(UserError, match="suffix .xml"):
        nncf_ptq(fp32["xml"], tmp_path / "q.onnx", x)
    with pytest.raises(ValueError, match="calibrate_method"):
        ort_static_quantize(fp32["onnx"], tmp_path / "q.onnx", x, symmetric_activations=True,
                            calibrate_method="kl")
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def qat_model(fp32, data) -> torch.nn.Module:
    """The fp32 net prepared for QAT and fine-tuned for a few steps (NNCF's torch backend: slow on first use)."""
    before = {k: v.clone() for k, v in fp32["net"].state_dict().items()}
    qmodel = nncf_qat_prepare(fp32["net"], data["train"][0][:64], mean=MEAN, std=STD, subset_size=64)
    assert qmodel is not fp32["net"]
    assert all(torch.equal(before[k], v) for k, v in fp32["net"].state_dict().items())  # the input is not changed
    x, y = (torch.from_numpy(a) for a in data["train"])
    optimiser = torch.optim.Adam(qmodel.parameters(), lr=1e-4)
    qmodel.train()
    for step in range(10):
        idx = torch.arange(step * 32, step * 32 + 32)
        loss = torch.nn.functional.cross_entropy(qmodel((x[idx] - MEAN[0]) / STD[0]), y[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return qmodel.eval()


def qat_logits(qmodel: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return qmodel((torch.from_numpy(x) - MEAN[0]) / STD[0]).numpy()


@pytest.mark.slow
def test_qat_model_trains_and_exports_to_an_int8_openvino_ir(qat_model, fp32, data, tmp_path: Path) -> None:
    import openvino as ov

    x, y = data["test"]
    assert float((qat_logits(qat_model, x).argmax(1) == y).mean()) >= 0.9
    xml = export_openvino(qat_model, tmp_path / "qat.xml", compress_to_fp16=False, mean=MEAN, std=STD,
                          example=torch.rand(1, 1, 8, 8))
    ops = Counter(op.get_type_name() for op in ov.Core().read_model(str(xml)).get_ordered_ops())
    assert ops["FakeQuantize"] >= 3
    assert xml.with_suffix(".bin").stat().st_size < 0.6 * fp32["xml"].with_suffix(".bin").stat().st_size
    with open_runner("openvino", xml, inference_precision="f32") as runner:
        logits = predict(runner, x, 64)
    # OpenVINO executes the quantized graph with real INT8 kernels, not as fake-quantized fp32 like torch and ONNX
    # Runtime's reference: logits differ by up to ~0.7 on magnitudes of 10-16 (the same when the IR comes from the
    # stripped QDQ ONNX), so the IR is judged on its predictions.
    assert float((logits.argmax(1) == qat_logits(qat_model, x).argmax(1)).mean()) >= 0.95
    assert float((logits.argmax(1) == y).mean()) >= 0.9


@pytest.mark.slow
def test_strip_qat_to_onnx_gives_a_plain_qdq_graph(qat_model, data, tmp_path: Path) -> None:
    x = data["test"][0]
    if importlib.util.find_spec("torchao") is None:
        with pytest.raises(UserError, match="torchao"):
            strip_qat_to_onnx(qat_model, MEAN, STD, torch.rand(1, 1, 8, 8), tmp_path / "qat.onnx")
        return
    out = strip_qat_to_onnx(qat_model, MEAN, STD, torch.rand(1, 1, 8, 8), tmp_path / "qat.onnx")
    ops = onnx_ops(out)
    assert ops["QuantizeLinear"] >= 3 and ops["DequantizeLinear"] >= 3
    logits = ort_run(out, {"input": x}, basic=True)[0]  # fake-quantized fp32, as torch computes it
    # measured: 0.043 on logits up to 15.5 (0.012 before the batch-norm fold: see the lean test below for why)
    np.testing.assert_allclose(logits, qat_logits(qat_model, x), atol=0.1)
    xml = export_openvino(out, tmp_path / "qat.xml", compress_to_fp16=False)  # the QDQ graph converts to OpenVINO too
    with open_runner("openvino", xml, inference_precision="f32") as runner:
        ov_logits = predict(runner, x, 64)
    assert float((ov_logits.argmax(1) == logits.argmax(1)).mean()) >= 0.95  # OpenVINO runs real INT8 kernels


def ort_run(model: onnx.ModelProto | Path, feeds: dict[str, np.ndarray], *, basic: bool = False) -> list[np.ndarray]:
    """Outputs of ``model`` in ONNX Runtime; ``basic``: graph optimisations at the basic level only, so a QDQ graph
    runs as fake-quantized fp32 (DQ → float kernel → Q), without the integer-kernel fusions of the default level."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if basic:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"]).run(None, feeds)


@pytest.mark.parametrize("dtype, axis, per_axis", [(np.int8, 0, True), (np.int8, 1, False), (np.uint8, 1, True),
                                                    (None, 1, False)])
def test_quantize_linear_matches_onnxruntime(dtype, axis: int, per_axis: bool) -> None:
    """The spec's formula (round half to even, saturation, per-axis broadcast, uint8 without a zero point) against
    ONNX Runtime's QuantizeLinear kernel."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    x = np.concatenate([np.array([0.5, 1.5, 2.5, -0.5, -2.5, 1e3, -1e3, 0.0]), rng.normal(0, 40, 40)]).astype(
        np.float32).reshape(4, 12)
    n = x.shape[axis] if per_axis else 1
    scale = (np.array([0.5, 1.0, 0.25, 2.0] * 3)[:n] if per_axis else np.array(1.0)).astype(np.float32)
    zp = None if dtype is None else (rng.integers(-3, 4, n) + (10 if dtype == np.uint8 else 0)).astype(dtype)
    if zp is not None and not per_axis:
        zp = zp.reshape(())
    inits = [numpy_helper.from_array(scale, "s")] + ([] if zp is None else [numpy_helper.from_array(zp, "z")])
    node = helper.make_node("QuantizeLinear", ["x", "s"] + ([] if zp is None else ["z"]), ["y"], axis=axis)
    out_type = TensorProto.UINT8 if dtype in (None, np.uint8) else TensorProto.INT8
    graph = helper.make_graph([node], "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", out_type, x.shape)], inits)
    expected = ort_run(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), {"x": x})[0]
    np.testing.assert_array_equal(quantize_linear(x, scale, zp, axis), expected)


def conv_bn_model(q: np.ndarray, gamma: np.ndarray) -> onnx.ModelProto:
    """input → Conv(DQ(q, per-channel scale)) → BatchNormalization(gamma, ...) → output, no activation quantizers."""
    from onnx import TensorProto, helper

    c = len(q)
    rng = np.random.default_rng(1)
    arrays = {"q": q, "s": np.linspace(0.01, 0.03, c).astype(np.float32), "z": np.zeros(c, np.int8),
              "b": rng.normal(0, 0.1, c).astype(np.float32), "gamma": gamma.astype(np.float32),
              "beta": rng.normal(0, 0.1, c).astype(np.float32), "mean": rng.normal(0, 0.1, c).astype(np.float32),
              "var": rng.uniform(0.5, 1.5, c).astype(np.float32)}
    nodes = [helper.make_node("DequantizeLinear", ["q", "s", "z"], ["w"], axis=0),
             helper.make_node("Conv", ["input", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["conv", "gamma", "beta", "mean", "var"], ["logits"])]
    graph = helper.make_graph(nodes, "convbn", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                              [2, q.shape[1], 6, 6])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [2, c, 6, 6])],
                              [numpy_helper.from_array(v, k) for k, v in arrays.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_fold_batch_norms_into_weight_scales_and_bias() -> None:
    rng = np.random.default_rng(0)
    q = rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8)
    gamma = np.array([1.5, -0.7, 0.3, -2.0])  # negative k: the integers change sign, the scale stays positive
    x = rng.random((2, 3, 6, 6), dtype=np.float32)
    model = conv_bn_model(q, gamma)
    expected = ort_run(model, {"input": x})[0]
    assert fold_batch_norms(model) == 1
    assert [n.op_type for n in model.graph.node] == ["DequantizeLinear", "Conv"]
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    dq = model.graph.node[0]
    assert np.all(weights[dq.input[1]] > 0)
    np.testing.assert_array_equal(weights[dq.input[0]], q * np.sign(gamma).reshape(-1, 1, 1, 1))
    np.testing.assert_allclose(ort_run(model, {"input": x})[0], expected, rtol=1e-5, atol=1e-5)
    q[1, 0, 0, 0] = -128  # a negative-k channel holding -128 cannot change sign in int8: the norm stays
    kept = conv_bn_model(q, gamma)
    assert fold_batch_norms(kept) == 0 and [n.op_type for n in kept.graph.node][-1] == "BatchNormalization"


def without_activation_quantizers(path: Path) -> onnx.ModelProto:
    """The model at ``path`` with every QuantizeLinear → DequantizeLinear pair on a computed tensor bypassed."""
    model = onnx.load(str(path))
    producer = {o: n for n in model.graph.node for o in n.output}
    bypass = {n.output[0]: producer[n.input[0]].input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"
              and getattr(producer.get(n.input[0]), "op_type", "") == "QuantizeLinear"}
    for node in model.graph.node:
        node.input[:] = [bypass.get(name, name) for name in node.input]
    return model


def unfolded_qat_onnx(qmodel: torch.nn.Module, path: Path) -> Path:
    """The QAT export before :func:`lean_qdq`: float weights behind QuantizeLinear, batch norms kept."""
    import nncf

    stripped = nncf.strip(qmodel, do_copy=True, strip_format=nncf.StripFormat.NATIVE,
                          example_input=(torch.rand(1, 1, 8, 8) - MEAN[0]) / STD[0])
    return export_onnx(stripped, MEAN, STD, torch.rand(1, 1, 8, 8), path)


@pytest.mark.slow
def test_qat_onnx_is_as_lean_as_ptq_and_computes_what_the_unfolded_graph_does(qat_model, fp32, data,
                                                                               tmp_path: Path) -> None:
    import onnxruntime as ort

    pytest.importorskip("torchao")
    x = data["test"][0]
    unfolded = unfolded_qat_onnx(qat_model, tmp_path / "unfolded.onnx")
    out = strip_qat_to_onnx(qat_model, MEAN, STD, torch.rand(1, 1, 8, 8), tmp_path / "qat.onnx")
    with open_runner("onnxruntime", unfolded) as runner:
        reference = predict(runner, x, 64)
    # The weight fold alone is exact, and its int8 values are those ONNX Runtime's constant folding computes.
    folded = onnx.load(str(unfolded))
    assert fold_weight_quantizers(folded) == onnx_ops(unfolded)["QuantizeLinear"] - onnx_ops(out)["QuantizeLinear"]
    np.testing.assert_array_equal(ort_run(folded, {"input": x})[0], reference)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp_path / "ort-basic.onnx")
    ort.InferenceSession(str(unfolded), options, providers=["CPUExecutionProvider"])
    ort_ints = {i.name: numpy_helper.to_array(i) for i in onnx.load(options.optimized_model_filepath).graph.initializer
                if i.data_type == onnx.TensorProto.INT8 and len(i.dims)}
    ours = {i.name: numpy_helper.to_array(i) for i in folded.graph.initializer if i.name in ort_ints}
    assert len(ours) >= 9 and all(np.array_equal(ours[k], ort_ints[k]) for k in ours)
    # The lean artifact: int8 weights straight into DequantizeLinear, no norms, the PTQ artifact's size.
    model = onnx.load(str(out))
    constants = {i.name: i for i in model.graph.initializer}
    ops = onnx_ops(out)
    assert ops["BatchNormalization"] == 0 and ops["Identity"] == 0 and ops["Conv"] == 9
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] in constants for n in model.graph.node)
    weight_dqs = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in constants]
    assert len(weight_dqs) == 10 and all(constants[n.input[0]].data_type == onnx.TensorProto.INT8 for n in weight_dqs)
    assert max(int(np.prod(i.dims)) for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT) <= 64
    ptq = ort_static_quantize(fp32["onnx"], tmp_path / "ptq.onnx", data["train"][0][:64], symmetric_activations=True)
    assert out.stat().st_size <= 1.05 * ptq.stat().st_size < 0.4 * unfolded.stat().st_size
    # The batch-norm fold is exact up to float rounding: with the activation quantizers taken out of both graphs,
    # logits agree to 1e-5 ...
    np.testing.assert_allclose(ort_run(without_activation_quantizers(out), {"input": x}, basic=True)[0],
                               ort_run(without_activation_quantizers(unfolded), {"input": x}, basic=True)[0],
                               rtol=1e-5, atol=1e-5)
    # ... but with them, an activation within float rounding of a step boundary moves by one step (about one per
    # image here), so the quantized graphs agree on predictions and, on logits up to 15.5, to 0.043 run as
    # fake-quantized fp32 (basic level) and to 0.060 with the integer QLinearConv kernels ONNX Runtime now fuses
    # (default level), as for PTQ (measured).
    basic = ort_run(out, {"input": x}, basic=True)[0]
    with open_runner("onnxruntime", out) as runner:
        logits = predict(runner, x, 64)
    for candidate in (basic, logits):
        assert float((candidate.argmax(1) == reference.argmax(1)).mean()) >= 0.99
        np.testing.assert_allclose(candidate, reference, atol=0.1)
