"""The report's INT8-against-fp32 part: "INT8 is slower than fp32 here, because ..." for a model made slower in INT8
on purpose (one tiny convolution, where the added quantize/dequantize nodes cost more than INT8 saves), the
latency-saved column of the mixed-precision table, and the sensitivity vs latency-saved chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.bench.measure import runner_settings
from edgekd.bench.profile import profile_artifact
from edgekd.bench.saving import latency_saved
from edgekd.export import export_onnx
from edgekd.quantize.ort import ort_static_quantize
from edgekd.report.int8 import sensitivity_latency_plot, slower_lines
from edgekd.report.sections import mixed_precision_lines

SHAPE = (1, 4, 4)


def artifact(name: str, precision: str, p50: float, **metrics: Any) -> dict[str, Any]:
    return {"name": name, "precision": precision, "runtime": "onnxruntime", "info": {"source": "student"},
            "metrics": {"latency_ms": {"p50": p50}, **metrics}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 1×1 convolution of one channel into two on a 4×4 image: almost no arithmetic for INT8 to save."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny")
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.Flatten()).eval()
    fp32 = export_onnx(net, [0.5], [0.25], torch.rand(2, *SHAPE), root / "fp32.onnx")
    calibration = np.random.default_rng(0).random((16, *SHAPE), dtype=np.float32)
    int8 = ort_static_quantize(fp32, root / "int8.onnx", calibration, symmetric_activations=False)
    settings = runner_settings("onnxruntime", {"threads": 1})
    fp32_rows = profile_artifact(fp32, "onnxruntime", settings, SHAPE, runs=50)
    int8_rows = profile_artifact(int8, "onnxruntime", settings, SHAPE, runs=50)
    return {"fp32_rows": fp32_rows, "int8_rows": int8_rows,
            "record": {"float_artifact": "student-onnx-fp32", "float_runtime": "onnxruntime",
                       **latency_saved(fp32_rows, int8_rows)}}


def test_int8_made_slower_on_purpose_is_explained_by_its_quantize_nodes(tiny: dict[str, Any]) -> None:
    qdq_ms = sum(r["time_ms"] for r in tiny["int8_rows"] if r["op_type"] in ("QuantizeLinear", "DequantizeLinear"))
    fp32_ms = sum(r["time_ms"] for r in tiny["fp32_rows"])
    int8_ms = sum(r["time_ms"] for r in tiny["int8_rows"])
    assert qdq_ms > 0 and int8_ms > fp32_ms  # the premise, from the profiles themselves
    manifest = {"artifacts": [artifact("student-onnx-fp32", "fp32", fp32_ms),
                              artifact("student-onnx-int8-ort", "int8", int8_ms, latency_saved=tiny["record"])]}
    [line] = slower_lines(manifest)
    assert line.startswith(f"- `student-onnx-int8-ort`: INT8 is slower than fp32 here (p50 {int8_ms:.4f} ms vs "
                           f"{fp32_ms:.4f} ms for `student-onnx-fp32` in onnxruntime), because of ")
    assert f"the added quantize/dequantize nodes ({qdq_ms:.4f} ms, fp32 0.0000 ms)" in line
    for entry in tiny["record"]["nodes"]:  # every layer slower in INT8 is named, none faster
        assert (f"`{entry['node']}`" in line) == (entry["saved_ms"] < 0), entry


def test_no_sentence_when_int8_is_faster_or_has_no_fp32_sibling(tiny: dict[str, Any]) -> None:
    faster = {"artifacts": [artifact("student-onnx-fp32", "fp32", 2.0),
                            artifact("student-onnx-int8-ort", "int8", 1.0, latency_saved=tiny["record"])]}
    assert slower_lines(faster) == []
    alone = {"artifacts": [artifact("student-onnx-int8-ort", "int8", 1.0)]}
    assert slower_lines(alone) == []
    unprofiled = {"artifacts": [artifact("student-onnx-fp32", "fp32", 1.0),
                                artifact("student-onnx-int8-ort", "int8", 2.0)]}
    assert slower_lines(unprofiled) == ["- `student-onnx-int8-ort`: INT8 is slower than fp32 here (p50 2.0000 ms vs "
                                        "1.0000 ms for `student-onnx-fp32` in onnxruntime); no per-layer profiles "
                                        "were taken to say why."]


def mixed_artifact() -> dict[str, Any]:
    sensitivity = [{"node": "/a/Conv", "op_type": "Conv", "sqnr_db": 20.0, "added_sqnr_db": 21.0,
                    "accuracy_gain": 0.02, "precision": "fp32"},
                   {"node": "/b/Conv", "op_type": "Conv", "sqnr_db": 30.0, "added_sqnr_db": 31.0,
                    "accuracy_gain": 0.0, "precision": "int8"}]
    saved = {"nodes": [{"node": "/a/Conv", "names": ["/a/Conv", "/a/Relu"], "role": "compute", "saved_ms": -0.25},
                       {"node": "/b/Conv", "names": ["/b/Conv"], "role": "compute", "saved_ms": 0.5}]}
    art = artifact("student-onnx-int8-ort-mixed", "int8", 1.0, latency_saved=saved)
    art["info"]["mixed"] = {"split": "validation", "ranking_samples": 10, "max_drop": 0.01, "k": 1,
                            "excluded": ["/a/Conv"], "fp32_accuracy": 0.9, "int8_accuracy": 0.8, "accuracy": 0.9,
                            "tried": [{"k": 0, "accuracy": 0.8}, {"k": 1, "accuracy": 0.9}],
                            "sensitivity": sensitivity}
    return art


def test_the_mixed_table_has_the_latency_saved_column() -> None:
    table = "\n".join(mixed_precision_lines(mixed_artifact()))
    assert "| latency saved (ms) |" in table
    assert "| `/a/Conv` | Conv | 20.0 | 21.0 | +2.00 | fp32 | — | -0.250 |" in table
    assert "| `/b/Conv` | Conv | 30.0 | 31.0 | +0.00 | int8 | — | +0.500 |" in table


def test_the_chart_is_drawn_for_the_mixed_artifact(tmp_path: Path) -> None:
    manifest = {"artifacts": [mixed_artifact()], "selected": "student-onnx-fp32"}
    path = sensitivity_latency_plot(manifest, tmp_path / "int8_layers.png")
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sensitivity_latency_plot({"artifacts": [artifact("x", "int8", 1.0)]}, tmp_path / "none.png") is None


def test_the_all_int8_accuracy_is_the_engines_own_and_names_the_rankings_where_they_differ() -> None:
    from edgekd.quantize.mixed import MixedPrecision, mixed_info
    from edgekd.quantize.sensitivity import SensitivityTable

    # an NNCF search (k = 0 scored on its own IR) ranked by ONNX Runtime's INT8, as nncf-mixed is
    table = SensitivityTable(fp32_accuracy=0.93, int8_accuracy=0.93, ranking_samples=300, rows=())
    info = mixed_info(MixedPrecision(Path("m.xml"), ("/a/Conv",), 0.9267, 0.93, ((0, 0.92), (1, 0.9267))), table, 0.01)
    assert (info["int8_accuracy"], info["ranking_int8_accuracy"]) == (0.92, 0.93)
    art = mixed_artifact()
    art["info"]["mixed"].update(int8_accuracy=0.8, ranking_int8_accuracy=0.85)
    assert "fp32 0.9000, all-INT8 0.8000 (the ranking's ONNX Runtime INT8: 0.8500);" in mixed_precision_lines(art)[0]
    art["info"]["mixed"]["ranking_int8_accuracy"] = 0.8
    assert "fp32 0.9000, all-INT8 0.8000; accuracy by nodes" in mixed_precision_lines(art)[0]


def test_an_int8_artifact_compiled_with_a_float_precision_is_labelled_int8_plus_that_float() -> None:
    from edgekd.report.tables import computed_in

    # a runtime compiled with inference precision f32 that lists its layers: 11 in u8, 1 in f32
    compute = {"compute": {"inference_precision": "f32", "layer_precisions": {"f32": 1, "u8": 11}}}
    assert computed_in("int8", compute, {}) == "int8+f32 (11 of 12 layers int8)"
    assert computed_in("int8", {"compute": {"inference_precision": "bf16"}}, {}) == "int8+bf16"
    # a runtime that reports the graph's own types already says so; float artifacts keep their label as is
    assert computed_in("int8", {"compute": {"inference_precision": "int8+f32"}}, {}) == "int8+f32"
    fp16 = {"compute": {"inference_precision": "f32", "layer_precisions": {"f16": 10}}}
    assert computed_in("fp16", fp16, {}) == "f32"
    assert computed_in("int8", {}, {"parity": {"compute": "f32"}}) == "int8+f32"
    assert computed_in("int8", {}, {}) == "—"
    mixed = mixed_artifact()
    mixed["metrics"]["compute"] = {"inference_precision": "f32", "layer_precisions": {"f32": 2, "i8": 1, "u8": 9}}
    assert mixed_precision_lines(mixed)[0].endswith("; computed in int8+f32 (10 of 12 layers int8).")


def test_a_chosen_by_artifact_names_whose_choice_it_keeps_and_the_nodes_it_could_not() -> None:
    art = mixed_artifact()
    art["name"] = "student-litert-int8-aiq-mixed"
    art["info"]["mixed"].update(
        excluded=["/a/Conv"], k=1, tried=[{"k": 1, "accuracy": 0.88}], unmapped={"/c/Conv": "no op holds it"},
        chosen_by={"engine": "ort-mixed", "excluded": ["/a/Conv", "/c/Conv"],
                   "tried": [{"k": 0, "accuracy": 0.8}, {"k": 1, "accuracy": 0.85}, {"k": 2, "accuracy": 0.9}]})
    lines = mixed_precision_lines(art)
    assert lines[-3:] == ["", "The float nodes are `ort-mixed`'s choice (2 node(s); its accuracy by nodes in float: "
                              "0: 0.8000, 1: 0.8500, 2: 0.9000), kept in INT8 here:", "- `/c/Conv`: no op holds it"]
    assert "accuracy by nodes in float: 1: 0.8800;" in lines[0]
    assert not any("choice" in line for line in mixed_precision_lines(mixed_artifact()))
