"""LiteRT (TFLite) runtime parts: export in every precision, the local runner, the device-runner session, LiteRT's own
benchmark tool and its parser.

Each expectation comes from outside the code under test: ONNX Runtime's logits for the same model, torch's accuracy,
parameter counts times bytes per weight, the TFLite quantization formula worked by hand, numbers read off a report
captured from the real tool.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.bench.device_runner import summarize, timed_loop
from edgekd.errors import UserError
from edgekd.export.onnx import check_parity, export_onnx
from edgekd.models import create
from edgekd.runtime import evaluate_accuracy, open_runner

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("litert_torch", "ai_edge_litert", "ai_edge_quantizer")),
    reason="LiteRT packages absent: pip install 'edgekd[litert]' (litert-torch, ai-edge-litert, ai-edge-quantizer)")

FIXTURE = Path(__file__).parent / "fixtures" / "bench" / "benchmark_litert_model_resnet8.txt"
MEAN, STD = [0.5], [0.25]
BATCH = 4


class TinyCnn(nn.Module):
    """Conv-BN-ReLU, pooling and a linear head: the layers every zoo model is built of."""

    def __init__(self, classes: int = 10, channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def _images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, size, size), dtype=np.float32)


@pytest.fixture(scope="module")
def resnet8_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``resnet8`` (1 channel, 28x28) at batch 4 in every precision, and its ONNX export."""
    from edgekd.runtime import deployable
    from edgekd.runtimes.litert.export import PRECISIONS, convert_fp32, quantize_model

    torch.manual_seed(0)
    net = create("resnet8", num_classes=10, in_channels=1).eval()
    folder = tmp_path_factory.mktemp("resnet8")
    example = torch.from_numpy(_images(BATCH, 28))
    fp32 = convert_fp32(deployable(net, MEAN, STD), example)
    files = {}
    for precision in PRECISIONS:
        files[precision] = folder / f"model-{precision}.tflite"
        files[precision].write_bytes(quantize_model(fp32, precision, _images(64, 28, seed=1)))  # type: ignore[arg-type]
    files["onnx"] = export_onnx(net, MEAN, STD, example, folder / "model.onnx")
    files["params"] = Path(str(sum(p.numel() for p in net.parameters())))
    return files


def test_fp32_logits_agree_with_onnxruntime(resnet8_files: dict[str, Path]) -> None:
    from edgekd.runtimes.litert.runner import LiteRtRunner

    x = _images(32, 28, seed=2)
    with LiteRtRunner(resnet8_files["fp32"], threads=1) as lite, open_runner("onnxruntime", resnet8_files["onnx"],
                                                                              threads=1) as ort:
        parity = check_parity(ort, lite, x, atol=1e-4, rtol=1e-4, min_top1_agreement=1.0)
    assert parity["passed"], parity


def test_three_channel_fp32_agrees_with_onnxruntime_through_the_layout_change(tmp_path: Path) -> None:
    """Three channels: LiteRT's kernels are NHWC, so the converter puts a TRANSPOSE behind the NCHW input."""
    from ai_edge_litert.interpreter import Interpreter

    from edgekd.runtimes.litert.export import export_tflite
    from edgekd.runtimes.litert.runner import LiteRtRunner

    torch.manual_seed(1)
    net = TinyCnn(channels=3).eval()
    mean, std = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
    x = np.random.default_rng(8).random((2, 3, 16, 16), dtype=np.float32)
    lite_path = export_tflite(net, mean, std, torch.from_numpy(x), tmp_path / "tiny.tflite")
    onnx_path = export_onnx(net, mean, std, torch.from_numpy(x), tmp_path / "tiny.onnx")
    ops = {op["op_name"] for op in Interpreter(model_path=str(lite_path))._get_ops_details()}
    assert "TRANSPOSE" in ops
    with LiteRtRunner(lite_path, threads=1) as lite, open_runner("onnxruntime", onnx_path, threads=1) as ort:
        assert lite.input_shape == (2, 3, 16, 16)
        parity = check_parity(ort, lite, np.random.default_rng(9).random((8, 3, 16, 16), dtype=np.float32),
                              atol=1e-4, rtol=1e-4, min_top1_agreement=1.0)
    assert parity["passed"], parity


@pytest.mark.parametrize(("precision", "input_dtype", "computed", "bytes_per_weight"), [
    ("fp32", "float32", "f32", 4), ("fp16", "float32", "f32", 2), ("int8-dynamic", "float32", "int8+f32", 1),
    ("int8", "int8", "int8", 1)])
def test_every_precision_loads_with_its_input_spec_and_size(resnet8_files: dict[str, Path], precision: str,
                                                            input_dtype: str, computed: str,
                                                            bytes_per_weight: int) -> None:
    from edgekd.runtimes.litert.runner import LiteRtRunner

    params = int(resnet8_files["params"].name)
    size = resnet8_files[precision].stat().st_size
    # Weights dominate: at least params x bytes per weight, and under the next wider type's share.
    assert params * bytes_per_weight <= size < params * (bytes_per_weight * 2 if bytes_per_weight < 4 else 5)
    with LiteRtRunner(resnet8_files[precision], threads=1) as runner:
        assert runner.input_shape == (BATCH, 1, 28, 28)  # NCHW at the boundary, as every edgekd artifact
        described = runner.describe()
        assert (described["input_dtype"], described["inference_precision"]) == (input_dtype, computed)
        logits = runner(_images(BATCH, 28, seed=3))
    assert logits.dtype == np.float32 and logits.shape == (BATCH, 10)


@pytest.mark.parametrize("precision", ["fp16", "int8-dynamic", "int8"])
def test_reduced_precisions_stay_near_fp32_logits(resnet8_files: dict[str, Path], precision: str) -> None:
    from edgekd.runtimes.litert.runner import LiteRtRunner

    x = _images(32, 28, seed=4)
    with LiteRtRunner(resnet8_files["fp32"]) as ref, LiteRtRunner(resnet8_files[precision]) as cand:
        parity = check_parity(ref, cand, x, atol=0.05 if precision == "fp16" else 0.5, rtol=0.01,
                              min_top1_agreement=0.9)
    assert parity["passed"], parity


def test_session_and_runner_give_the_same_logits(resnet8_files: dict[str, Path]) -> None:
    from edgekd.runtimes.litert.runner import LiteRtRunner
    from edgekd.runtimes.litert.session import Session

    x = _images(BATCH, 28, seed=5)
    for precision in ("fp32", "int8"):
        session = Session(str(resnet8_files[precision]), {"threads": 1}, list(x.shape))
        call, output, _ = session.bind(x)
        call()
        with LiteRtRunner(resnet8_files[precision], threads=1) as runner:
            np.testing.assert_array_equal(output(), runner(x))


def test_fixed_batch_is_enforced_and_predict_pads(resnet8_files: dict[str, Path]) -> None:
    from edgekd.runtime import predict
    from edgekd.runtimes.litert.runner import LiteRtRunner

    x = _images(6, 28, seed=6)
    with LiteRtRunner(resnet8_files["fp32"], threads=1) as runner:
        with pytest.raises(UserError, match="does not match"):
            runner(x)
        padded = predict(runner, x, batch_size=64)
        first = runner(x[:BATCH])
    assert padded.shape == (6, 10)
    np.testing.assert_array_equal(padded[:BATCH], first)


def test_runner_refuses_unknown_options_and_delegates(resnet8_files: dict[str, Path]) -> None:
    from edgekd.runtimes.litert.runner import LiteRtRunner

    with pytest.raises(UserError, match="unknown option.*providers"):
        LiteRtRunner(resnet8_files["fp32"], providers=["cpu"])
    with pytest.raises(UserError, match="delegate 'gpu'"):
        LiteRtRunner(resnet8_files["fp32"], delegate="gpu")
    with LiteRtRunner(resnet8_files["fp32"], threads=1, delegate="none") as plain, \
            LiteRtRunner(resnet8_files["fp32"], threads=1) as xnnpack:
        x = _images(BATCH, 28, seed=7)
        np.testing.assert_allclose(plain(x), xnnpack(x), atol=1e-4, rtol=1e-4)


def test_session_is_standalone_python_38() -> None:
    """The device runner carries session.py to a board: Python 3.8 syntax, numpy + ai_edge_litert + stdlib only."""
    import ast
    import sys

    import edgekd.runtimes.litert.session as session

    tree = ast.parse(Path(session.__file__).read_text(), feature_version=(3, 8))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported - set(sys.stdlib_module_names) - {"__future__"} == {"numpy", "ai_edge_litert"}


def test_quantize_and_dequantize_follow_the_tflite_formula() -> None:
    from edgekd.runtimes.litert.session import dequantize, quantize

    detail = {"name": "x", "dtype": np.int8, "quantization": (0.5, -3)}
    # round(x / 0.5) - 3, saturated to [-128, 127]: 0 -> -3, 1 -> -1, 0.74 -> round(1.48) - 3 = -2, 100 -> 127.
    q = quantize(np.array([0.0, 1.0, 0.74, 100.0, -100.0], dtype=np.float32), detail)
    np.testing.assert_array_equal(q, np.array([-3, -1, -2, 127, -128], dtype=np.int8))
    # (q + 3) * 0.5
    np.testing.assert_array_equal(dequantize(q, detail), np.array([0.0, 1.0, 0.5, 65.0, -62.5], dtype=np.float32))
    float_detail = {"name": "y", "dtype": np.float32, "quantization": (0.0, 0)}
    assert quantize(np.ones(2, np.float64), float_detail).dtype == np.float32


def trained_digits_cnn() -> tuple[TinyCnn, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """A :class:`TinyCnn` trained on scikit-learn's digits (1400 images, seed 0), the images in [0, 1], labels,
    train and held-out indices (392 = 49 batches of 8) and torch's held-out accuracy."""
    from sklearn.datasets import load_digits

    from edgekd.runtime import deployable

    digits = load_digits()
    x = (digits.images[:, None] / 16.0).astype(np.float32)
    y = digits.target
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1400], order[1400:1400 + 392]
    torch.manual_seed(0)
    net = TinyCnn()
    model = deployable(net, MEAN, STD).train()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    xt, yt = torch.from_numpy(x[train]), torch.from_numpy(y[train])
    for _ in range(40):
        for i in range(0, len(xt), 100):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[i:i + 100]), yt[i:i + 100]).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        torch_acc = float((deployable(net, MEAN, STD)(torch.from_numpy(x[test])).argmax(1).numpy() == y[test]).mean())
    return net, x, y, train, test, torch_acc


def test_int8_accuracy_on_digits_within_two_points_of_fp32(tmp_path: Path) -> None:
    """INT8 (full-integer and dynamic) and fp16 accuracy in LiteRT against torch's fp32 accuracy on the same
    held-out digits."""
    from edgekd.runtimes.litert.export import export_tflite
    from edgekd.runtimes.litert.runner import LiteRtRunner

    net, x, y, train, test, torch_acc = trained_digits_cnn()
    assert torch_acc > 0.85  # a model worth quantizing
    example = torch.from_numpy(x[train[:8]])
    for precision, allowed in (("fp32", 0.003), ("fp16", 0.005), ("int8-dynamic", 0.02), ("int8", 0.02)):
        path = export_tflite(net, MEAN, STD, example, tmp_path / f"{precision}.tflite", precision=precision,
                             calibration=x[train[:256]])
        with LiteRtRunner(path, threads=1) as runner:
            acc = evaluate_accuracy(runner, x[test], y[test], batch_size=8)
        assert abs(acc - torch_acc) <= allowed, (precision, acc, torch_acc)


class DataDependent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x.flatten(1)
        return -x.flatten(1)


class NoLowering(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.svdvals(x.flatten(2)).flatten(1)


@pytest.mark.parametrize(("model", "names"), [(DataDependent(), "if x.sum() > 0"),
                                              (NoLowering(), "aten._linalg_svd")])
def test_uncapturable_model_is_one_line_naming_the_op(model: nn.Module, names: str) -> None:
    from edgekd.runtimes.litert.export import convert_fp32

    with pytest.raises(UserError) as caught:
        convert_fp32(model, torch.rand(1, 1, 4, 4))
    message = str(caught.value)
    assert "\n" not in message and names in message and message.startswith(type(model).__name__)


def test_benchmark_tool_failure_names_the_error_not_the_log(tmp_path: Path) -> None:
    from edgekd.errors import RuntimeFailure
    from edgekd.runtimes.litert.native import run_benchmark_tool

    bad = tmp_path / "bad.tflite"
    bad.write_text("not a flatbuffer\n")
    with pytest.raises(RuntimeFailure, match=r"exit 1: RuntimeError: Failed to load model from file\)"):
        run_benchmark_tool(bad, runs=1, warmup_runs=0)


def test_parser_reads_the_real_report_by_hand() -> None:
    from edgekd.runtimes.litert.native import parse_benchmark_litert_model

    report = parse_benchmark_litert_model(FIXTURE.read_text())
    assert report["latency_ms"] == {"mean": 1.32, "min": 0.19, "max": 40.27, "median": 0.19, "std": 5.34,
                                    "p5": 0.19, "p95": 1.08}
    assert (report["init_ms"], report["warmup_first_ms"], report["warmup_mean_ms"]) == (5.29, 0.27, 1.82)
    assert (report["runs"], report["warmup_runs"], report["throughput_mb_s"]) == (100, 10, 2.26)
    assert report["fully_accelerated"] is True
    with pytest.raises(ValueError, match="Inference \\(median\\)"):
        parse_benchmark_litert_model("Inference (avg): 1.00 ms (5 runs)")


def test_benchmark_tool_and_session_medians_agree_loosely(resnet8_files: dict[str, Path]) -> None:
    """One run each, so a factor of 3 (the 10 % comparison is benchmarks/litert_agreement.py's, repeated)."""
    from edgekd.runtimes.litert.native import run_benchmark_tool
    from edgekd.runtimes.litert.session import Session

    path = resnet8_files["fp32"]
    native = run_benchmark_tool(path, threads=1, runs=300, warmup_runs=30)
    assert native["runs"] == 300 and native["command"][-3:] == ["--num_threads=1", "--num_runs=300",
                                                                 "--warmup_runs=30"]
    call, _, _ = Session(str(path), {"threads": 1}).bind(_images(BATCH, 28))
    ours = summarize(timed_loop(call, warmup_runs=30, runs=300))["p50"]
    assert native["latency_ms"]["median"] / 3 <= ours <= native["latency_ms"]["median"] * 3, (ours, native)


# Laid out as benchmark_model prints its Run Order table (xla/tsl/util/stats_calculator.cc): right-aligned columns
# and a trailing name; handwritten to that layout (the file and this string), since no benchmark_model binary exists
# on this machine to capture one.
OP_PROFILE_SPACES = Path(__file__).parent / "fixtures" / "bench" / "benchmark_model_op_profile_handwritten.txt"
OP_PROFILE_TABS = ("Operator-wise Profiling Info for Regular Benchmark Runs:\n"
                   "============================== Run Order ==============================\n"
                   "\t             [node type]\t          [start]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]"
                   "\t[times called]\t[Name]\n"
                   "\t                 CONV_2D\t            0.066\t    0.754\t    0.957\t 72.066%\t 72.066%\t     0.000"
                   "\t        1\t[model/conv2d/Relu]:0\n")


def test_op_profile_rows_follow_the_header_columns() -> None:
    from edgekd.runtimes.litert.op_profile import by_node_type, parse_op_profile

    rows = parse_op_profile(OP_PROFILE_SPACES.read_text())
    assert [(r["node_type"], r["node_index"], r["avg_ms"], r["times_called"]) for r in rows] == [
        ("QUANTIZE", 0, 0.012, 1), ("Convolution (NHWC, QC8) IGEMM", 1, 0.09, 2), ("Add (ND, QS8)", 1, 0.004, 1),
        ("DEQUANTIZE", 3, 0.002, 1)]
    assert rows[1]["name"] == "Delegate/Convolution (NHWC, QC8) IGEMM:1" and rows[1]["percent"] == 60.0
    assert rows[3]["name"] == "[StatefulPartitionedCall:0]:3" and "start_ms" not in rows[0]
    # per run: 0.09 ms x 2 calls = 0.18 ms of convolution, ahead of 0.012 + 0.004 + 0.002
    assert by_node_type(rows) == pytest.approx({"Convolution (NHWC, QC8) IGEMM": 0.18, "QUANTIZE": 0.012,
                                                "Add (ND, QS8)": 0.004, "DEQUANTIZE": 0.002})
    (old,) = parse_op_profile(OP_PROFILE_TABS)
    assert (old["node_type"], old["start_ms"], old["first_ms"], old["avg_ms"], old["node_index"]) == (
        "CONV_2D", 0.066, 0.754, 0.957, 0)
    with pytest.raises(ValueError, match="enable_op_profiling"):
        parse_op_profile("Inference timings in us: Init: 1, First inference: 2")


# ---------------------------------------------------------------------------------- the runtime package's parts


def test_the_registered_exporter_refuses_an_uncapturable_model_with_exit_2(tmp_path: Path) -> None:
    """What the export stage records on the artifact: one line naming the source line, exit code 2 (bad input)."""
    from edgekd.config import ExportConfig, load_device
    from edgekd.export.build import exporter

    fmt, build = exporter("litert", "fp32", load_device("x86-cpu-litert"))
    assert fmt == "litert"
    with pytest.raises(UserError) as caught:
        build(DataDependent(), [0.0], [1.0], torch.rand(1, 1, 4, 4), tmp_path, ExportConfig())
    assert caught.value.exit_code == 2 and "if x.sum() > 0" in str(caught.value)
    assert not (tmp_path / "model.tflite").exists()


def test_the_registered_exporter_writes_fp32_and_fp16_weights(tmp_path: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from edgekd.config import ExportConfig, load_device
    from edgekd.export.build import exporter
    from edgekd.runtimes.litert.bench import artifact_precision

    net = TinyCnn().eval()
    files = {}
    for precision in ("fp32", "fp16"):
        _, build = exporter("litert", precision, load_device("x86-cpu-litert"))
        files[precision] = build(net, MEAN, STD, torch.rand(2, 1, 8, 8), tmp_path / precision, ExportConfig())
        assert files[precision] == tmp_path / precision / "model.tflite"
        assert artifact_precision(files[precision]) == precision
    # the conv and linear weights (8*9 + 16*8*9 + 16*10 = 1384 values) become float16 tensors
    halves = [d for d in Interpreter(model_path=str(files["fp16"])).get_tensor_details()
              if np.dtype(d["dtype"]) == np.float16]
    assert sum(int(np.prod(d["shape"])) for d in halves) == 8 * 9 + 16 * 8 * 9 + 16 * 10
    assert Interpreter(model_path=str(files["fp32"])).get_input_details()[0]["shape"].tolist() == [2, 1, 8, 8]


def _job(fp32: Path, calibration: np.ndarray, unmet: str | None = None) -> object:
    from edgekd.config.quantize import QuantizeConfig
    from edgekd.quantize.jobs import Int8Job

    def unused(*_: object) -> object:
        raise AssertionError("not used by LiteRT's planner")

    return Int8Job(runtime="litert", device="CPU", stem="student", cfg=QuantizeConfig(), calibration=calibration,
                   nncf_target="ANY", symmetric_activations=False, unmet=unmet, fp32=lambda fmt: fp32,
                   val=unused, max_drop=unused, qat_model=unused, mean=MEAN, std=STD, example=None)


def test_the_int8_plan_builds_a_full_integer_model_from_the_fp32_one(resnet8_files: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from edgekd.runtimes.litert import quantize
    from edgekd.runtimes.litert.bench import artifact_precision
    from edgekd.runtimes.litert.runner import LiteRtRunner

    builds, not_built = quantize.plan(_job(resnet8_files["fp32"], _images(32, 28, seed=2)))  # type: ignore[arg-type]
    assert not_built == {} and [(b.name, b.format, b.runtime) for b in builds] == [
        ("student-litert-int8-aiq", "litert", "litert")]
    path = builds[0].build(tmp_path)
    assert path == tmp_path / "model.tflite" and artifact_precision(path) == "int8"
    detail = Interpreter(model_path=str(path)).get_input_details()[0]
    assert np.dtype(detail["dtype"]) == np.int8 and detail["quantization"][0] > 0
    x = _images(BATCH, 28, seed=8)
    with LiteRtRunner(resnet8_files["fp32"], threads=1) as ref, LiteRtRunner(path, threads=1) as cand:
        assert cand.describe()["inference_precision"] == "int8"
        parity = check_parity(ref, cand, x, atol=float("inf"), min_top1_agreement=0.5)
    assert parity["passed"], parity
    _, why = quantize.plan(_job(resnet8_files["fp32"], _images(8, 28), unmet="ai-edge-litert not installed"))  # type: ignore[arg-type]
    assert why == {"student-litert-int8-aiq": "ai-edge-litert not installed"}
    assert list(quantize.qat_plan(_job(resnet8_files["fp32"], _images(8, 28)))[1]) == ["student-litert-int8-qat"]  # type: ignore[arg-type]


def test_compare_native_runs_the_tool_and_refuses_another_delegate(resnet8_files: dict[str, Path]) -> None:
    from edgekd.runtimes.litert import native

    assert native.parse is native.parse_benchmark_litert_model and native.TOOL_MODULE.endswith(native.TOOL)
    with pytest.raises(UserError, match="XNNPACK"):
        native.compare(resnet8_files["fp32"], {}, {"threads": 1, "delegate": "none"}, [BATCH, 1, 28, 28], 10)
    report = native.compare(resnet8_files["fp32"], {}, {"threads": 1}, [BATCH, 1, 28, 28], 20)
    assert report["runs"] == 20 and report["latency_ms"]["median"] > 0
    assert "--num_threads=1" in report["command"] and f"--model={resnet8_files['fp32']}" in report["command"]


def test_predictor_maps_a_batch_to_the_runners_logits(resnet8_files: dict[str, Path]) -> None:
    from edgekd.runtimes.litert.runner import LiteRtRunner
    from edgekd.runtimes.litert.session import predictor

    run, fixed = predictor(resnet8_files["int8"], {"threads": 1, "delegate": "xnnpack"})
    assert fixed == BATCH
    x = _images(BATCH, 28, seed=9)
    with LiteRtRunner(resnet8_files["int8"], threads=1) as runner:
        np.testing.assert_array_equal(run(x), runner(x))
