"""Exporters (ONNX, OpenVINO IR, TensorRT) and the parity check of an artifact against its reference."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from edgekd.errors import UserError
from edgekd.export import Normalize, check_parity, deployable, export_onnx
from edgekd.models import create
from edgekd.quantize import ort_static_quantize
from edgekd.runtime import open_runner
from edgekd.runtimes.openvino.exporter import export_openvino
from edgekd.runtimes.tensorrt.exporter import build_engine, inspect_onnx_precision
from edgekd.runtimes.tensorrt.runner import tensorrt_problem

MEAN, STD = [0.5, 0.25], [0.2, 0.4]
TENSORRT_PROBLEM = tensorrt_problem()


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(1)
    return create("plain2", num_classes=4, in_channels=2).eval()


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(1).random((12, 2, 8, 8), dtype=np.float32)


@pytest.fixture(scope="module")
def onnx_path(net: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(net, MEAN, STD, torch.rand(3, 2, 8, 8), tmp_path_factory.mktemp("onnx") / "model.onnx")


def torch_logits(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return deployable(net, MEAN, STD)(torch.from_numpy(x)).numpy()


def test_normalize_is_per_channel_affine() -> None:
    x = torch.rand(2, 2, 3, 3)
    out = Normalize(MEAN, STD)(x)
    assert torch.allclose(out[:, 0], (x[:, 0] - 0.5) / 0.2)
    assert torch.allclose(out[:, 1], (x[:, 1] - 0.25) / 0.4)
    with pytest.raises(ValueError):
        Normalize([0.5], [0.0])


def test_onnx_export_is_one_checked_file_with_the_contract_names(onnx_path: Path) -> None:
    assert sorted(p.name for p in onnx_path.parent.iterdir()) == ["model.onnx"]  # no .onnx.data, no temp files
    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["logits"]
    assert {o.domain: o.version for o in model.opset_import}[""] == 17
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [2, 8, 8]
    assert {"Sub", "Div"} <= {n.op_type for n in model.graph.node}  # the normalisation is in the graph


def test_onnx_export_restores_training_mode_and_matches_torch(tmp_path: Path, x: np.ndarray) -> None:
    torch.manual_seed(2)
    net = create("plain2", num_classes=4, in_channels=2).train()
    path = export_onnx(net, MEAN, STD, torch.rand(1, 2, 8, 8), tmp_path / "m.onnx", opset=13, dynamic_batch=False)
    assert net.training
    with open_runner("onnxruntime", path) as runner:
        assert runner.input_shape == (1, 2, 8, 8)
        np.testing.assert_allclose(runner(x[:1]), torch_logits(net.eval(), x[:1]), atol=1e-4)


def test_failed_export_leaves_nothing_behind(net: torch.nn.Module, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        export_onnx(net, MEAN, STD, torch.rand(1, 3, 8, 8), tmp_path / "m.onnx")  # 3 channels, mean has 2
    assert list(tmp_path.iterdir()) == []


def test_parity_passes_for_the_export_and_flags_a_perturbed_model(net, x, onnx_path: Path) -> None:
    reference = lambda batch: torch_logits(net, batch)  # noqa: E731
    with open_runner("onnxruntime", onnx_path) as runner:
        same = check_parity(reference, runner, x, atol=1e-4, batch_size=5)
    assert same["passed"] and same["max_abs_diff"] < 1e-4 and same["top1_agreement"] == 1.0

    noisy = create("plain2", num_classes=4, in_channels=2).eval()
    noisy.load_state_dict(net.state_dict())
    with torch.no_grad():
        for p in noisy.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    noisy_path = export_onnx(noisy, MEAN, STD, torch.rand(1, 2, 8, 8), onnx_path.parent.parent / "noisy.onnx")
    with open_runner("onnxruntime", noisy_path) as runner:
        result = check_parity(reference, runner, x, atol=1e-3)
    expected_diff = float(np.abs(torch_logits(noisy, x) - torch_logits(net, x)).max())
    assert not result["passed"]
    assert result["max_abs_diff"] == pytest.approx(expected_diff, rel=1e-3)


def test_parity_judges_agreement_separately_from_tolerance(net, x) -> None:
    reference = lambda batch: torch_logits(net, batch)  # noqa: E731
    shifted = lambda batch: torch_logits(net, batch) + 10.0  # noqa: E731  (same argmax, far logits)
    result = check_parity(reference, shifted, x, atol=1e-3)
    assert result == {"max_abs_diff": pytest.approx(10.0, abs=1e-4), "top1_agreement": 1.0, "passed": False}
    assert check_parity(reference, shifted, x, atol=11.0)["passed"]


LOGITS = np.array([20.0, -15.0, 3.0, 0.5], dtype=np.float32)  # one sample's logits: two large, two small


def fixed_logits(scale: float = 1.0, shift: np.ndarray | None = None):
    """A runner answering every sample with ``LOGITS * scale + shift``."""
    row = LOGITS * scale + (0.0 if shift is None else shift)
    return lambda batch: np.tile(row, (len(batch), 1)).astype(np.float32)


@pytest.mark.parametrize(("scale", "shift", "atol", "rtol"), [
    (1.004, None, 0.05, 0.0),  # 0.4 % relative error: 0.08 on the logit 20, over a purely absolute 0.05
    (1.004, None, 0.05, 0.01),  # the same error inside 0.05 + 1 % of each logit
    (1.0, np.array([0.0, 0.0, 0.0, 0.06]), 0.05, 0.01),  # 0.06 on the logit 0.5: the relative part adds only 0.005
    (1.0, np.array([0.0, 0.0, 0.0, 0.054]), 0.05, 0.01),  # 0.054 on it: inside 0.05 + 0.005
])
def test_parity_tolerance_is_numpy_isclose_bound(x, scale: float, shift, atol: float, rtol: float) -> None:
    reference, candidate = fixed_logits(), fixed_logits(scale, shift)
    result = check_parity(reference, candidate, x, atol=atol, rtol=rtol)
    expected = bool(np.isclose(candidate(x), reference(x), rtol=rtol, atol=atol).all())
    assert result["passed"] is expected and result["top1_agreement"] == 1.0
    assert result["max_abs_diff"] == pytest.approx(float(np.abs(candidate(x) - reference(x)).max()))


def test_reduced_precisions_get_a_bound_relative_to_the_logit() -> None:
    from edgekd.config import ExportConfig
    from edgekd.export.build import parity_message, parity_tolerance

    cfg = ExportConfig()
    assert parity_tolerance(cfg, "fp32") == (cfg.parity_atol, 0.0, cfg.min_top1_agreement)
    fp16, bf16 = parity_tolerance(cfg, "fp16"), parity_tolerance(cfg, "bf16")
    # about 20 unit roundoffs of the format: 2^-11 for fp16, 2^-8 for bf16
    assert fp16.rtol == pytest.approx(20 * 2.0**-11, rel=0.03) and bf16.rtol == pytest.approx(20 * 2.0**-8, rel=0.03)
    # the miss seen on an AMX Xeon (OpenVINO computing f16), max |Δlogit| 0.0501: over the old absolute 0.05, inside
    # the new bound unless it sat on a logit under 0.01 in magnitude
    assert fp16.atol < 0.0501 <= fp16.atol + fp16.rtol * 0.02
    line = parity_message({"samples": 512, "max_abs_diff": 0.3, "top1_agreement": 1.0, **fp16._asdict()})
    assert "(allowed 0.05 + 0.01·|logit|)" in line


def test_openvino_ir_from_onnx_runs_and_fp16_halves_the_weights(net, x, onnx_path: Path, tmp_path: Path) -> None:
    xmls = {fp16: export_openvino(onnx_path, tmp_path / str(fp16) / "model.xml", compress_to_fp16=fp16)
            for fp16 in (False, True)}
    for fp16, xml in xmls.items():
        assert sorted(p.name for p in xml.parent.iterdir()) == ["model.bin", "model.xml"]  # no staging folder left
        with open_runner("openvino", xml, threads=1) as runner:
            assert runner.input_shape == (None, 2, 8, 8)
            np.testing.assert_allclose(runner(x), torch_logits(net, x), atol=1e-2 if fp16 else 1e-4)
    sizes = {fp16: xml.with_suffix(".bin").stat().st_size for fp16, xml in xmls.items()}
    assert sizes[True] / sizes[False] == pytest.approx(0.5, abs=0.05)


def test_openvino_ir_from_torch_carries_the_normalisation(net, x, tmp_path: Path) -> None:
    xml = export_openvino(net, tmp_path / "model.xml", compress_to_fp16=False, mean=MEAN, std=STD,
                          example=torch.rand(1, 2, 8, 8))
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    assert model.inputs[0].get_any_name() == "input" and model.outputs[0].get_any_name() == "logits"
    with open_runner("openvino", xml) as runner:
        assert runner.input_shape[0] is None
        np.testing.assert_allclose(runner(x[:5]), torch_logits(net, x[:5]), atol=1e-4)
    with pytest.raises(ValueError, match="mean, std and example"):
        export_openvino(net, tmp_path / "m2.xml", compress_to_fp16=False)


@pytest.fixture(scope="module")
def qdq(onnx_path: Path, x: np.ndarray) -> dict[str, Path]:
    """Symmetric and asymmetric QDQ versions of the ONNX export."""
    return {sym: ort_static_quantize(onnx_path, onnx_path.with_name(f"qdq_{sym}.onnx"), x, symmetric_activations=sym)
            for sym in (True, False)}


@pytest.fixture(scope="module")
def trt_qdq(onnx_path: Path, x: np.ndarray) -> Path:
    """The QDQ graph TensorRT takes: symmetric, biases left float."""
    return ort_static_quantize(onnx_path, onnx_path.with_name("qdq_trt.onnx"), x, symmetric_activations=True,
                               quantize_bias=False)


def test_onnx_precision_facts(onnx_path: Path, qdq: dict[bool, Path], trt_qdq: Path) -> None:
    assert inspect_onnx_precision(onnx_path) == {"qdq": False, "symmetric": True, "fp16": False,
                                                 "int32_dequantize": []}
    facts = inspect_onnx_precision(qdq[True])
    assert facts["qdq"] and facts["symmetric"] and not facts["fp16"] and facts["int32_dequantize"]  # int32 biases
    assert inspect_onnx_precision(qdq[False])["symmetric"] is False
    assert inspect_onnx_precision(trt_qdq)["int32_dequantize"] == []


@pytest.mark.parametrize("which, precision, message", [
    ("fp32", "int8", "needs a Q/DQ graph"),
    ("asymmetric", "int8", "symmetric quantization only"),
    ("symmetric", "int8", "take int32 input"),
    ("symmetric", "fp32", "engine is int8, not fp32"),
    ("symmetric", "fp16", "engine is int8, not fp16"),
    ("fp32", "bf16", "must be fp32, fp16 or int8"),
])
def test_tensorrt_precision_mismatch_is_refused_before_building(onnx_path, qdq, tmp_path: Path, which: str,
                                                                precision: str, message: str) -> None:
    source = {"fp32": onnx_path, "symmetric": qdq[True], "asymmetric": qdq[False]}[which]
    with pytest.raises(UserError, match=message):
        build_engine(source, tmp_path / "m.engine", precision=precision)
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(TENSORRT_PROBLEM is None, reason="TensorRT >= 10 and a CUDA device are present here")
def test_missing_tensorrt_is_a_user_error(onnx_path: Path, tmp_path: Path) -> None:
    """Without TensorRT >= 10 and a CUDA device, building and running say which of them is missing."""
    assert TENSORRT_PROBLEM is not None
    with pytest.raises(UserError, match=f"^{re.escape(str(tmp_path / 'm.engine'))}: {re.escape(TENSORRT_PROBLEM)}$"):
        build_engine(onnx_path, tmp_path / "m.engine")
    fake = tmp_path / "m.engine"
    fake.write_bytes(b"not an engine")
    with pytest.raises(UserError, match=re.escape(TENSORRT_PROBLEM)):
        open_runner("tensorrt", fake)


@pytest.mark.parametrize("precision, atol, agreement", [("fp32", 1e-3, 1.0), ("fp16", 5e-2, 0.9), ("int8", 0.25, 0.75)])
@pytest.mark.skipif(TENSORRT_PROBLEM is not None, reason=str(TENSORRT_PROBLEM))
def test_tensorrt_engine_matches_onnxruntime(onnx_path, trt_qdq, x, tmp_path: Path, precision: str, atol: float,
                                             agreement: float) -> None:
    import tensorrt as trt

    source = trt_qdq if precision == "int8" else onnx_path
    strongly_typed_only = int(trt.__version__.split(".")[0]) >= 11
    if precision == "fp16" and strongly_typed_only and importlib.util.find_spec("onnxconverter_common") is None:
        with pytest.raises(UserError, match="install onnxconverter-common"):
            build_engine(source, tmp_path / "m.engine", precision=precision)
        return
    cache = tmp_path / "timing.cache"
    engine = build_engine(source, tmp_path / "m.engine", precision=precision, timing_cache=cache, max_batch=16)
    assert cache.stat().st_size > 0
    with open_runner("onnxruntime", source) as reference, open_runner("tensorrt", engine) as runner:
        assert runner.input_shape == (None, 2, 8, 8)
        assert runner.describe()["max_batch"] == 16
        result = check_parity(reference, runner, x, atol=atol, min_top1_agreement=agreement, batch_size=5)
        with pytest.raises(UserError, match="largest batch"):
            runner(np.zeros((17, 2, 8, 8), dtype=np.float32))
    assert result["passed"], result


def test_simplified_onnx_is_valid_and_computes_the_same(net, x, onnx_path: Path, tmp_path: Path) -> None:
    import shutil

    from edgekd.export.onnx import simplify_onnx

    copy = tmp_path / "slim.onnx"
    shutil.copy(onnx_path, copy)
    assert simplify_onnx(copy) == copy
    onnx.checker.check_model(onnx.load(str(copy)), full_check=True)
    assert len(onnx.load(str(copy)).graph.node) <= len(onnx.load(str(onnx_path)).graph.node)
    with open_runner("onnxruntime", copy) as runner:
        np.testing.assert_allclose(runner(x), torch_logits(net, x), atol=1e-4)
