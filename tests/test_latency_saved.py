"""Latency saved per layer by INT8: fp32 and INT8 per-layer profiles joined at the source graph's nodes, by hand on
made-up rows, and in ONNX Runtime on a small model whose one conv is made far larger than the others."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edgekd.bench.measure import runner_settings
from edgekd.bench.profile import profile_artifact
from edgekd.bench.saving import latency_saved, matched_compute, slower_parts
from edgekd.export import export_onnx
from edgekd.quantize.ort import ort_static_quantize


def row(layer: str, op: str, ms: float, order: int, nodes: list[str], role: str) -> dict:
    return {"layer": layer, "onnx_nodes": nodes[-1:], "module": None, "op_type": op, "kernel": None, "time_ms": ms,
            "share": 0.0, "order": order, "nodes": nodes, "role": role}


def test_rows_join_at_the_compute_node_and_overheads_are_summed() -> None:
    fp32 = [row("/a/Relu_output_0_nchwc", "Conv", 0.5, 0, ["/a/Conv", "/a/Relu"], "compute"),
            row("/b/Conv_output_0_nchwc", "Conv", 0.25, 1, ["/b/Conv"], "compute"),
            row("ReorderOutput", "ReorderOutput", 0.125, 2, [], "layout")]
    int8 = [row("x_QuantizeLinear", "QuantizeLinear", 0.0625, 0, ["x_QuantizeLinear"], "quantize"),
            row("/a/Conv_token_1", "QLinearConv", 0.125, 1, ["/a/Conv"], "compute"),
            row("/b/Conv_token_2", "QLinearConv", 0.5, 2, ["/b/Conv"], "compute"),
            row("/add/Add", "QLinearAdd", 0.25, 3, ["/add/Add"], "other"),
            row("y_DequantizeLinear", "DequantizeLinear", 0.0625, 4, ["y_DequantizeLinear"], "quantize")]
    record = latency_saved(fp32, int8)
    by_node = {e["node"]: e for e in record["nodes"]}
    assert set(by_node) == {"/a/Conv", "/b/Conv", "/add/Add"}
    assert (by_node["/a/Conv"]["float_ms"], by_node["/a/Conv"]["int8_ms"], by_node["/a/Conv"]["saved_ms"]) == \
        (0.5, 0.125, 0.375)
    assert by_node["/a/Conv"]["float_op"] == "Conv" and by_node["/a/Conv"]["int8_op"] == "QLinearConv"
    assert by_node["/b/Conv"]["saved_ms"] == -0.25
    assert by_node["/add/Add"]["float_op"] is None and by_node["/add/Add"]["saved_ms"] == -0.25
    assert record["quantize"] == {"float_ms": 0.0, "int8_ms": 0.125, "saved_ms": -0.125, "int8_rows": 2}
    assert record["layout"]["saved_ms"] == 0.125
    assert (record["float_ms"], record["int8_ms"]) == (0.875, 1.0)
    assert matched_compute(record) == 2
    assert [p["node"] for p in slower_parts(record)] == ["/b/Conv", "/add/Add", "quantize"]


def test_a_row_left_alone_joins_the_other_side_by_any_shared_name() -> None:
    fp32 = [row("fc", "FullyConnected", 1.0, 0, ["fc/Add"], "compute")]
    int8 = [row("fc_q", "FullyConnectedQuantized", 0.25, 0, ["fc/MatMul", "fc/Add"], "compute"),
            row("other", "Subgraph", 0.5, 1, ["norm/Sub"], "other")]
    record = latency_saved(fp32, int8)
    assert [(e["node"], e["float_ms"], e["int8_ms"]) for e in record["nodes"]] == [("fc/MatMul", 1.0, 0.25),
                                                                                   ("norm/Sub", 0.0, 0.5)]


class ThreeConvs(nn.Module):
    """Three convolutions, the middle one (64 → 64 channels, 3×3, at full resolution) far costlier than the
    others (1 → 8 and 8 → 64 channels, then a global pool)."""

    def __init__(self) -> None:
        super().__init__()
        self.small = nn.Conv2d(1, 8, 3, padding=1)
        self.wide = nn.Conv2d(8, 64, 1)
        self.big = nn.Conv2d(64, 64, 3, padding=1)
        self.fc = nn.Linear(64, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.small(x))
        x = torch.relu(self.wide(x))
        x = torch.relu(self.big(x))
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> dict:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("saved")
    shape = (1, 32, 32)
    fp32 = export_onnx(ThreeConvs().eval(), [0.5], [0.25], torch.rand(2, *shape), root / "fp32.onnx")
    calibration = np.random.default_rng(0).random((16, *shape), dtype=np.float32)
    int8 = ort_static_quantize(fp32, root / "int8.onnx", calibration, symmetric_activations=False)
    settings = runner_settings("onnxruntime", {"threads": 1})
    return {"fp32": fp32, "fp32_rows": profile_artifact(fp32, "onnxruntime", settings, shape, runs=30),
            "int8_rows": profile_artifact(int8, "onnxruntime", settings, shape, runs=30)}


def test_every_conv_of_the_float_graph_is_one_entry_with_both_times(pair: dict) -> None:
    convs = [n.name for n in onnx.load(str(pair["fp32"])).graph.node if n.op_type in ("Conv", "Gemm")]
    record = latency_saved(pair["fp32_rows"], pair["int8_rows"])
    entries = {e["node"]: e for e in record["nodes"] if e["role"] == "compute"}
    assert sorted(entries) == sorted(convs)
    for node in convs:
        assert entries[node]["float_op"] and entries[node]["int8_op"], entries[node]
    # the fp32 kernels carry their Relu (named after it), the INT8 ones are QLinearConv named after the Conv
    assert {entries[n]["int8_op"] for n in convs if n.endswith("Conv")} == {"QLinearConv"}
    assert record["quantize"]["int8_rows"] >= 2 and record["quantize"]["float_ms"] == 0.0
    total = sum(r["time_ms"] for r in pair["int8_rows"])
    assert record["int8_ms"] == pytest.approx(total)
    assert sum(e["int8_ms"] for e in record["nodes"]) + record["quantize"]["int8_ms"] + \
        record["layout"]["int8_ms"] == pytest.approx(total)


def test_the_largest_conv_saves_the_most(pair: dict) -> None:
    record = latency_saved(pair["fp32_rows"], pair["int8_rows"])
    saved = {e["node"]: e["saved_ms"] for e in record["nodes"] if e["role"] == "compute"}
    big = next(n for n in saved if "/big/" in n)
    assert max(saved, key=lambda n: saved[n]) == big, saved
    assert saved[big] > 0
