"""The precision that runs is the artifact's own, on every x86 CPU (with or without BF16), and it is recorded.

OpenVINO's CPU plugin computes in bf16 by default where the CPU reports BF16 (AVX-512 BF16, AMX): these tests pin
precisions explicitly and hold on either kind of CPU; the bf16 ones skip with the reason where there is no BF16.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from edgekd.config import load_device
from edgekd.errors import RuntimeFailure, UserError
from edgekd.export import export_onnx
from edgekd.models import create
from edgekd.runtime import open_runner, save_torch_artifact
from edgekd.runtime import precision as policy
from edgekd.runtimes.openvino.exporter import export_openvino
from edgekd.stages._runtime import runner_options

MEAN, STD = [0.5], [0.25]
NO_BF16 = policy.bf16_unsupported("openvino")


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return create("resnet8", num_classes=10, in_channels=1).eval()


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(0).random((64, 1, 16, 16), dtype=np.float32)


@pytest.fixture(scope="module")
def files(net: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("precision")
    example = torch.rand(1, 1, 16, 16)
    onnx_path = export_onnx(net, MEAN, STD, example, root / "model.onnx")
    return {"onnx": onnx_path,
            "ir": export_openvino(onnx_path, root / "fp32" / "model.xml", compress_to_fp16=False),
            "ir16": export_openvino(onnx_path, root / "fp16" / "model.xml", compress_to_fp16=True),
            "torch": save_torch_artifact(net, {"name": "resnet8", "kwargs": {"num_classes": 10, "in_channels": 1}},
                                         MEAN, STD, root / "model.pt")}


def logits(runtime: str, path: Path, x: np.ndarray, **options: object) -> tuple[np.ndarray, dict]:
    with open_runner(runtime, path, threads=2, **options) as runner:
        return runner(x), runner.describe()


def test_policy_maps_each_label_to_an_explicit_hint() -> None:
    fp16_compute = "f16" if "FP16" in policy.openvino_capabilities("CPU") else "f32"
    assert {p: policy.openvino_hint(p, "CPU") for p in policy.PRECISIONS} == {
        "fp32": "f32", "bf16": "bf16", "fp16": fp16_compute, "int8": "f32"}
    assert policy.WEIGHTS == {"fp32": "fp32", "bf16": "fp32", "fp16": "fp16", "int8": "int8"}
    device = load_device("x86-cpu")
    assert runner_options(device, "openvino", "fp32") == {"threads": 2, "device": "CPU", "inference_precision": "f32"}
    assert runner_options(device, "torch", "bf16")["inference_precision"] == "bf16"
    assert "inference_precision" not in runner_options(device, "onnxruntime", "fp32")


def test_openvino_fp32_computes_in_f32_on_every_cpu(files, x) -> None:
    """Without an explicit hint this IR would run in bf16 on a BF16 CPU and differ from ONNX Runtime by ~1e-2."""
    reference, ort_settings = logits("onnxruntime", files["onnx"], x)
    got, settings = logits("openvino", files["ir"], x)
    assert settings["inference_precision"] == "f32" and set(settings["layer_precisions"]) == {"f32"}
    assert ort_settings["inference_precision"] == "f32"
    np.testing.assert_allclose(got, reference, atol=1e-4, rtol=0)


def test_fp16_weights_compute_as_the_policy_says(files, x) -> None:
    reference, _ = logits("onnxruntime", files["onnx"], x)
    hint = policy.openvino_hint("fp16")
    got, settings = logits("openvino", files["ir16"], x, inference_precision=hint)
    assert settings["inference_precision"] == hint
    # fp16-rounded weights, f32 arithmetic: ~1e-3 relative at most, far below an fp16-compute error
    assert np.max(np.abs(got - reference)) < 0.05 and (got.argmax(1) == reference.argmax(1)).mean() >= 0.95


@pytest.mark.skipif(NO_BF16 is not None, reason=f"no bf16 here: {NO_BF16}")
def test_openvino_bf16_runs_in_bf16_and_stays_close(files, x) -> None:
    reference, _ = logits("openvino", files["ir"], x, inference_precision="f32")
    got, settings = logits("openvino", files["ir"], x, inference_precision="bf16")
    assert settings["inference_precision"] == "bf16" and settings["layer_precisions"].get("bf16", 0) > 0
    diff = np.max(np.abs(got - reference))
    assert 1e-5 < diff < 0.25  # really computed in bf16 (8-bit mantissa), yet within the bf16 tolerance
    assert (got.argmax(1) == reference.argmax(1)).mean() >= 0.95


@pytest.mark.skipif(not policy.torch_bf16_supported(), reason="this CPU has no native bf16 (AVX-512 BF16 or AMX)")
def test_torch_bf16_autocast_is_close_to_fp32(files, x) -> None:
    reference, _ = logits("torch", files["torch"], x)
    got, settings = logits("torch", files["torch"], x, inference_precision="bf16")
    assert settings["inference_precision"] == "bf16"
    assert 1e-5 < np.max(np.abs(got - reference)) < 0.25


def test_without_bf16_the_export_plan_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd.stages.export import export_plan

    monkeypatch.setattr(policy, "openvino_capabilities", lambda device="CPU": frozenset({"FP32", "INT8"}))
    plan, not_built = export_plan(load_device("x86-cpu"))
    pairs = [(row.runtime, row.precision) for row in plan]
    assert ("openvino", "bf16") not in pairs and ("openvino", "fp32") in pairs
    assert not_built["openvino/bf16"].startswith("OpenVINO CPU reports no BF16 capability here")


def test_unknown_precision_is_refused(files) -> None:
    with pytest.raises(UserError, match="inference_precision 'int4'"):
        open_runner("openvino", files["ir"], inference_precision="int4")
    with pytest.raises(UserError, match="inference_precision 'f16'"):
        open_runner("torch", files["torch"], inference_precision="f16")


def test_a_runtime_crash_after_validation_is_an_internal_error(tmp_path: Path) -> None:
    """A graph that reshapes to a fixed batch of 1 loads and accepts the (dynamic) input shape, then fails inside
    ONNX Runtime on a batch of 2: that is a runtime failure (exit 3), not bad input (exit 2)."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["input", "shape"], ["logits"])], "fixed",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 2, 2])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor("shape", TensorProto.INT64, [2], [1, 4])])
    path = tmp_path / "fixed.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with open_runner("onnxruntime", path) as runner:
        assert runner(np.zeros((1, 1, 2, 2), np.float32)).shape == (1, 4)
        with pytest.raises(RuntimeFailure, match="ONNX Runtime failed on a batch of shape") as info:
            runner(np.zeros((2, 1, 2, 2), np.float32))
    assert info.value.exit_code == 3
