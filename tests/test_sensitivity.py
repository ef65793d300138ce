"""Per-layer INT8 sensitivity and the mixed-precision ONNX Runtime model, on a CNN with one conv made sensitive on
purpose: a dead input channel (always exactly 0 after ReLU) whose weight in ``conv2`` is a huge outlier. The float
function is unchanged (outlier × 0), but per-tensor INT8 weights of ``conv2`` get a scale so large that every other
weight rounds to 0, leaving ``conv2``'s output at its bias."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from edgekd.export import export_onnx
from edgekd.quantize.mixed import FLOAT_NODES_KEY, ort_mixed_precision
from edgekd.quantize.ort import ort_static_quantize, prepare_float
from edgekd.quantize.sensitivity import (
    KEEP_FLOAT,
    LayerSensitivity,
    SensitivityTable,
    db,
    ort_sensitivity,
    quantized_nodes,
)
from tests.test_quantize import CLASSES, MEAN, STD, separable

OUTLIER = 1000.0
OPTIONS: dict[str, Any] = {"per_channel": False, "symmetric_activations": False}


def cnn(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, CLASSES))


def with_outlier(trained: nn.Sequential) -> nn.Sequential:
    """``trained`` with a ninth conv1 channel that ReLU always zeroes (weights 0, bias −1) and conv2 reading it
    through one outlier weight: the same function."""
    net = cnn(9)
    state = {k: v.clone() for k, v in trained.state_dict().items()}
    state["0.weight"] = torch.cat([state["0.weight"], torch.zeros(1, 1, 3, 3)])
    state["0.bias"] = torch.cat([state["0.bias"], torch.tensor([-1.0])])
    extra = torch.zeros(8, 1, 3, 3)
    extra[0, 0, 1, 1] = OUTLIER
    state["2.weight"] = torch.cat([state["2.weight"], extra], dim=1)
    net.load_state_dict(state)
    return net.eval()


@pytest.fixture(scope="module")
def data() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {"train": separable(256, 0), "val": separable(128, 1)}


@pytest.fixture(scope="module")
def model(data, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    torch.manual_seed(0)
    trained = cnn(8)
    x, y = (torch.from_numpy(a) for a in data["train"])
    optimiser = torch.optim.Adam(trained.parameters(), lr=0.02)
    for step in range(80):
        idx = torch.arange(step * 64, step * 64 + 64) % len(x)
        loss = nn.functional.cross_entropy(trained((x[idx] - MEAN[0]) / STD[0]), y[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    net = with_outlier(trained.eval())
    root = tmp_path_factory.mktemp("sensitivity")
    path = export_onnx(net, MEAN, STD, torch.rand(1, 1, 8, 8), root / "model.onnx")
    names = [name for name, _ in quantized_nodes(prepare_float(path, root / "float.onnx"),
                                                 ort_static_quantize(path, root / "int8.onnx", data["train"][0],
                                                                     **OPTIONS))]
    return {"onnx": path, "net": net, "trained": trained.eval(), "nodes": names}


def torch_accuracy(net: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((net((torch.from_numpy(x) - MEAN[0]) / STD[0]).argmax(1).numpy() == y).mean())


def test_the_outlier_leaves_the_float_function_unchanged(model, data) -> None:
    x = torch.from_numpy(data["val"][0])
    with torch.no_grad():
        assert torch.allclose(model["net"]((x - MEAN[0]) / STD[0]), model["trained"]((x - MEAN[0]) / STD[0]),
                              atol=1e-5)
    assert torch_accuracy(model["net"], *data["val"]) >= 0.95
    assert len(model["nodes"]) == 4  # three convs and the classifier's Gemm


def conv2_bias_only_sqnr(net: nn.Sequential, x: np.ndarray) -> float:
    """SQNR of conv2's output when its weights all round to 0 (output = bias), by hand from the float net."""
    with torch.no_grad():
        y = net[:3]((torch.from_numpy(x) - MEAN[0]) / STD[0]).double()
        noise = y - net[2].bias.double().view(1, -1, 1, 1)
    return db(float((y ** 2).sum()), float((noise ** 2).sum()))


def test_the_sensitive_conv_ranks_first_by_sqnr_and_by_accuracy(model, data, tmp_path: Path) -> None:
    train_x, val = data["train"][0], data["val"]
    table = ort_sensitivity(model["onnx"], train_x, *val, work_dir=tmp_path, sqnr_samples=64, ranking_samples=128,
                            **OPTIONS)
    conv2 = model["nodes"][1]
    assert table.rows[0].node == conv2 and table.by_sqnr()[0].node == conv2
    rows = {r.node: r for r in table.rows}
    # per-tensor int8 leaves conv2 at its bias: its output SQNR is the hand-computed bias-only SQNR
    assert rows[conv2].sqnr_db == pytest.approx(conv2_bias_only_sqnr(model["net"], train_x[:64]), abs=0.5)
    assert rows[model["nodes"][0]].sqnr_db > 25 and rows[model["nodes"][0]].added_sqnr_db > 25
    # float model accuracy equals torch's; reverting conv2 alone recovers it, reverting any other node does not
    assert table.fp32_accuracy == pytest.approx(torch_accuracy(model["net"], *val))
    assert table.int8_accuracy <= 0.5
    assert table.int8_accuracy + rows[conv2].accuracy_gain >= table.fp32_accuracy - 0.02
    assert all(r.accuracy_gain <= 0.05 for r in table.rows[1:])


def optimised(path: Path, disabled: Sequence[str] = KEEP_FLOAT) -> onnx.GraphProto:
    """The graph ONNX Runtime's CPU provider runs, after its QDQ fusions, with the ``disabled`` transformers off."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(path.with_name(f"{path.stem}-optimised-{len(disabled)}.onnx"))
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled))
    return onnx.load(options.optimized_model_filepath).graph


def test_onnxruntime_runs_the_excluded_conv_in_float(model, data, tmp_path: Path) -> None:
    conv2 = model["nodes"][1]
    out = ort_static_quantize(model["onnx"], tmp_path / "mixed.onnx", data["train"][0], nodes_to_exclude=[conv2],
                              **OPTIONS)
    # the file keeps conv2 in float, but ONNX Runtime's WeightBiasQuantization re-quantizes a float Conv that reads
    # a DequantizeLinear output when left on: all three convs then run as QLinearConv
    assert Counter(n.op_type for n in optimised(out, ()).node)["QLinearConv"] == 3
    graph = optimised(out)
    ops = Counter(n.op_type for n in graph.node)
    assert ops["QLinearConv"] == 2 and ops["Conv"] == 1 and ops["ConvInteger"] == 0
    inits = {i.name: i for i in graph.initializer}
    (float_conv,) = [n for n in graph.node if n.op_type == "Conv"]
    weight = inits[float_conv.input[1]]
    assert weight.data_type == onnx.TensorProto.FLOAT  # conv2's own float weights, outlier included
    assert numpy_helper.to_array(weight).shape == (8, 9, 3, 3) and numpy_helper.to_array(weight).max() == OUTLIER


def test_mixed_precision_keeps_the_fewest_nodes_in_float_within_the_drop(model, data, tmp_path: Path) -> None:
    train_x, val = data["train"][0], data["val"]
    table = ort_sensitivity(model["onnx"], train_x, *val, work_dir=tmp_path / "work", ranking_samples=128, **OPTIONS)
    mixed = ort_mixed_precision(model["onnx"], tmp_path / "mixed.onnx", train_x, *val, table, max_drop=0.02,
                                work_dir=tmp_path / "work", **OPTIONS)
    assert mixed.excluded == (model["nodes"][1],)
    props = {p.key: p.value for p in onnx.load(str(mixed.path)).metadata_props}
    assert json.loads(props[FLOAT_NODES_KEY]) == [model["nodes"][1]]
    assert mixed.fp32_accuracy - mixed.accuracy <= 0.02
    assert mixed.accuracy == pytest.approx(torch_accuracy(model["net"], *val), abs=0.02)
    fixed = ort_mixed_precision(model["onnx"], tmp_path / "two.onnx", train_x, *val, table, k=2,
                                work_dir=tmp_path / "work", **OPTIONS)
    assert fixed.excluded == tuple(r.node for r in table.rows[:2])
    ops = Counter(n.op_type for n in optimised(fixed.path).node)
    assert ops["Conv"] + ops["Gemm"] + ops["MatMul"] == 2


def test_mixed_precision_rejects_bad_requests(model, data, tmp_path: Path) -> None:
    table = SensitivityTable(fp32_accuracy=1.0, int8_accuracy=1.0, ranking_samples=1, rows=())
    x, y = data["val"]
    for kwargs, message in [({}, "exactly one"), ({"k": 1, "max_drop": 0.01}, "exactly one"), ({"k": 1}, r"\[0, 0\]"),
                            ({"max_drop": 1.5}, r"\[0, 1\)")]:
        with pytest.raises(ValueError, match=message):
            ort_mixed_precision(model["onnx"], tmp_path / "m.onnx", x, x, y, table, work_dir=tmp_path, **kwargs)
    assert not (tmp_path / "m.onnx").exists()


def test_edgekd_runs_the_mixed_model_with_its_float_nodes_in_float(model, data, tmp_path: Path) -> None:
    """The onnxruntime Runner (and the device runner's session, through the same ``create_session``) reads the float
    nodes from the model's metadata: its accuracy is the float conv2's, not that of conv2 re-quantized per tensor."""
    from edgekd.runtime import evaluate_accuracy, open_runner
    from edgekd.runtimes.onnxruntime import session

    assert (session.FLOAT_NODES_KEY, session.KEEP_FLOAT) == (FLOAT_NODES_KEY, KEEP_FLOAT)  # copies: no edgekd import
    conv2 = model["nodes"][1]
    train_x, (val_x, val_y) = data["train"][0], data["val"]
    table = SensitivityTable(1.0, 0.0, 1, (LayerSensitivity(conv2, "Conv", 0.0, 0.0, 1.0),))
    mixed = ort_mixed_precision(model["onnx"], tmp_path / "mixed.onnx", train_x, val_x, val_y, table, k=1,
                                work_dir=tmp_path / "work", **OPTIONS)
    unmarked = ort_static_quantize(model["onnx"], tmp_path / "unmarked.onnx", train_x, nodes_to_exclude=[conv2],
                                   **OPTIONS)
    with open_runner("onnxruntime", mixed.path) as runner:
        assert evaluate_accuracy(runner, val_x, val_y, batch_size=64) == torch_accuracy(model["net"], val_x, val_y)
    with open_runner("onnxruntime", unmarked) as runner:
        assert evaluate_accuracy(runner, val_x, val_y, batch_size=64) <= 0.5


def runtime_precisions(xml: Path, nodes: Sequence[str]) -> dict[str, str]:
    """Per ONNX node, the ``runtimePrecision`` of the Convolution / FullyConnected layer that computes it in
    OpenVINO's CPU runtime graph (found by its ``originalLayersNames``: the node, or an op named below it)."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    layers = [(info["originalLayersNames"].astype(str).split(","), info["runtimePrecision"].astype(str))
              for info in (op.get_rt_info() for op in compiled.get_runtime_model().get_ordered_ops())
              if info["layerType"].astype(str) in ("Convolution", "FullyConnected")]
    found = {}
    for node in nodes:
        (precision,) = [p for names, p in layers if any(n == node or n.startswith(node + "/") for n in names)]
        found[node] = precision
    return found


def test_openvino_runs_the_excluded_conv_in_float(model, data, tmp_path: Path) -> None:
    """NNCF's IgnoredScope, given the ranking's ONNX node names through the IR's op names: in OpenVINO's runtime
    graph conv2 computes in f32 when it is kept float and in u8 when it is not; the other layers stay INT8."""
    from edgekd.quantize.nncf_mixed import nncf_mixed_precision

    nodes, conv2 = model["nodes"], model["nodes"][1]
    ranked = [conv2, *(n for n in nodes if n != conv2)]
    table = SensitivityTable(1.0, 0.0, 1, tuple(LayerSensitivity(n, "Conv", 0.0, 0.0, 0.0) for n in ranked))
    train_x, (val_x, val_y) = data["train"][0], data["val"]
    precisions = {}
    for k in (0, 1):
        mixed = nncf_mixed_precision(model["onnx"], tmp_path / f"mixed-{k}.xml", train_x, val_x, val_y, table, k=k,
                                     work_dir=tmp_path / "work", target_device="CPU", subset_size=64)
        assert mixed.excluded == tuple(ranked[:k]) and mixed.path.with_suffix(".bin").is_file()
        assert mixed.fp32_accuracy == pytest.approx(torch_accuracy(model["net"], val_x, val_y), abs=1 / len(val_y))
        precisions[k] = runtime_precisions(mixed.path, nodes)
    assert set(precisions[0].values()) <= {"u8", "i8"}
    assert precisions[1][conv2] == "f32"
    assert all(precisions[1][n] in ("u8", "i8") for n in nodes if n != conv2)
    assert mixed.accuracy >= mixed.fp32_accuracy - 0.05


def test_nncf_mixed_precision_names_a_node_the_ir_lacks(model, data, tmp_path: Path) -> None:
    from edgekd.errors import UserError
    from edgekd.quantize.nncf_mixed import nncf_mixed_precision

    table = SensitivityTable(1.0, 0.0, 1, (LayerSensitivity("/no/such/Conv", "Conv", 0.0, 0.0, 0.0),))
    x, y = data["val"]
    with pytest.raises(UserError, match="no Convolution/GroupConvolution/MatMul op stands for the ONNX node"):
        nncf_mixed_precision(model["onnx"], tmp_path / "m.xml", x, x, y, table, k=1, work_dir=tmp_path)
    assert not (tmp_path / "m.xml").exists()


def test_mixed_precision_tries_counts_up_to_max_excluded(model, data, tmp_path: Path) -> None:
    """With conv2 ranked first, no count up to ``max_excluded=0`` is within the drop (the all-INT8 model is the one
    that loses it: a clear error naming the cap), and ``max_excluded=1`` tries 0 then 1 and keeps conv2 float."""
    from edgekd.errors import UserError

    nodes, conv2 = model["nodes"], model["nodes"][1]
    ranked = [conv2, *(n for n in nodes if n != conv2)]
    table = SensitivityTable(1.0, 0.0, 1, tuple(LayerSensitivity(n, "Conv", 0.0, 0.0, 0.0) for n in ranked))
    train_x, (val_x, val_y) = data["train"][0], data["val"]
    with pytest.raises(UserError, match=r"with up to 0 of the 4 ranked nodes \(max_excluded\) in float: the best, 0"):
        ort_mixed_precision(model["onnx"], tmp_path / "none.onnx", train_x, val_x, val_y, table, max_drop=0.02,
                            max_excluded=0, work_dir=tmp_path / "work", **OPTIONS)
    assert not (tmp_path / "none.onnx").exists()
    mixed = ort_mixed_precision(model["onnx"], tmp_path / "one.onnx", train_x, val_x, val_y, table, max_drop=0.02,
                                max_excluded=1, work_dir=tmp_path / "work", **OPTIONS)
    assert mixed.excluded == (conv2,) and [k for k, _ in mixed.tried] == [0, 1]
    assert mixed.tried[0][1] <= 0.5 and mixed.tried[1][1] == mixed.accuracy
    assert mixed.accuracy == pytest.approx(torch_accuracy(model["net"], val_x, val_y), abs=0.02)


def test_the_default_ranking_subset_judges_a_one_point_drop_to_a_quarter_point() -> None:
    """The drop is paired: on each image fp32 and INT8 are both right, both wrong, or one flips. Drawn ranking
    subsets of a population where 3 % of images flip (three in four of them to wrong) give drops whose spread is at
    most sqrt(f / n): a quarter of a 1-point max_drop at the default size, as large as the drop at 300 images."""
    from edgekd.config.quantize import MixedPrecisionConfig
    from edgekd.quantize.sensitivity import RANKING_SAMPLES

    assert MixedPrecisionConfig().ranking_samples == RANKING_SAMPLES
    flipped, to_wrong, max_drop = 0.03, 0.75, MixedPrecisionConfig().max_drop
    rng = np.random.default_rng(0)

    def spread(n: int) -> float:
        # per image: +1 fp32 right and INT8 wrong, -1 the other way round, 0 otherwise; the drop is their mean
        d = rng.choice([1, -1, 0], size=(2000, n), p=[flipped * to_wrong, flipped * (1 - to_wrong), 1 - flipped])
        return float(d.mean(axis=1).std())

    bound = (flipped / RANKING_SAMPLES) ** 0.5
    assert bound <= max_drop / 4
    assert 0.9 * bound <= spread(RANKING_SAMPLES) <= 1.05 * bound
    assert spread(300) >= 0.75 * max_drop
