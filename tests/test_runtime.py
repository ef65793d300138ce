"""Runners (torch, ONNX Runtime, OpenVINO), the runtime capability table, batching helpers and latency statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import edgekd
from edgekd.bench.latency import interleaved_calls, latency_stats, measure_latency
from edgekd.errors import UserError
from edgekd.export import export_onnx
from edgekd.models import create, save_checkpoint
from edgekd.runtime import RUNTIMES, evaluate_accuracy, open_runner, predict, save_torch_artifact
from edgekd.runtime.precision import PRECISIONS

MEAN, STD = [0.25], [0.5]
SPEC = {"name": "plain2", "kwargs": {"num_classes": 3, "in_channels": 1}}


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    model = create(SPEC["name"], **SPEC["kwargs"])
    model.train()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so folding them is exercised
        for _ in range(3):
            model(torch.randn(16, 1, 8, 8) * 2 + 1)
    return model.eval()


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(0).random((10, 1, 8, 8), dtype=np.float32)


@pytest.fixture(scope="module")
def artifacts(net: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("artifacts")
    example = torch.rand(2, 1, 8, 8)
    return {
        "torch": save_torch_artifact(net, SPEC, MEAN, STD, root / "model.pt"),
        "onnx": export_onnx(net, MEAN, STD, example, root / "model.onnx"),
        "onnx_b4": export_onnx(net, MEAN, STD, torch.rand(4, 1, 8, 8), root / "b4.onnx", dynamic_batch=False),
    }


def reference_logits(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """The plain network on normalised input, computed by hand: net((x - mean) / std)."""
    with torch.no_grad():
        return net((torch.from_numpy(x) - MEAN[0]) / STD[0]).numpy()


def test_capability_table_lists_each_runtime_with_its_formats() -> None:
    packages = {p.name for p in (Path(edgekd.__file__).parent / "runtimes").iterdir() if (p / "spec.py").is_file()}
    assert {"torch", "onnxruntime", "openvino", "tensorrt"} <= packages
    assert set(RUNTIMES.names()) == packages  # every runtime package on disk registers its Runner, and nothing else
    assert RUNTIMES.entry("onnxruntime").meta["formats"] == ("onnx",)
    assert "openvino" in RUNTIMES.entry("openvino").meta["formats"]
    for entry in RUNTIMES.entries():
        assert set(entry.meta) == {"formats", "precisions", "devices", "options"}
        assert set(entry.meta["precisions"]) <= set(PRECISIONS)
        assert entry.obj.name == entry.name


def test_torch_and_onnxruntime_agree_and_normalise_inside(net, x, artifacts) -> None:
    expected = reference_logits(net, x)
    with open_runner("torch", artifacts["torch"], threads=1) as torch_runner, \
            open_runner("onnxruntime", artifacts["onnx"], threads=1) as ort_runner:
        from_torch, from_ort = torch_runner(x), ort_runner(x)
        assert ort_runner.describe()["providers"] == ["CPUExecutionProvider"]
        assert torch_runner.describe()["device"] == "cpu"
    assert from_ort.dtype == np.float32 and from_ort.shape == (10, 3)
    np.testing.assert_allclose(from_torch, expected, atol=1e-5)
    np.testing.assert_allclose(from_ort, from_torch, atol=1e-4)


@pytest.mark.parametrize("runtime, key", [("onnxruntime", "onnx"), ("openvino", "onnx"), ("torch", "torch")])
@pytest.mark.parametrize("batch", [1, 5])
def test_dynamic_batch(net, x, artifacts, runtime: str, key: str, batch: int) -> None:
    with open_runner(runtime, artifacts[key]) as runner:
        assert runner.input_shape[0] is None
        np.testing.assert_allclose(runner(x[:batch]), reference_logits(net, x[:batch]), atol=1e-4)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_fixed_batch_artifact_is_padded_and_scored_once(net, x, artifacts, runtime: str) -> None:
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    expected = float((reference_logits(net, x).argmax(1) == y).mean())
    with open_runner(runtime, artifacts["onnx_b4"]) as runner:
        assert runner.input_shape == (4, 1, 8, 8)
        assert predict(runner, x, batch_size=3).shape == (10, 3)  # 10 samples through batches of 4
        assert evaluate_accuracy(runner, x, y, batch_size=3) == pytest.approx(expected)


def test_corrupt_onnx_file_is_a_user_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07this is not a protobuf" * 10)
    with pytest.raises(UserError, match="bad.onnx"):
        open_runner("onnxruntime", bad)


WRONG_SHAPES = [(2, 3, 8, 8), (2, 1, 8)]


@pytest.mark.parametrize("runtime, key, shape", [
    *[("torch", "torch", s) for s in WRONG_SHAPES],  # the eager net accepts any spatial size
    *[(r, "onnx", s) for r in ("onnxruntime", "openvino") for s in [*WRONG_SHAPES, (4, 1, 8, 9)]],
    *[("onnxruntime", "onnx_b4", s) for s in [*WRONG_SHAPES, (4, 1, 8, 9), (2, 1, 8, 8)]],
])
def test_wrong_input_shape_is_a_user_error(artifacts, runtime: str, key: str, shape: tuple[int, ...]) -> None:
    with open_runner(runtime, artifacts[key]) as runner, pytest.raises(UserError, match="shape"):
        runner(np.zeros(shape, dtype=np.float32))


def test_wrong_dtype_is_a_user_error(artifacts) -> None:
    with open_runner("onnxruntime", artifacts["onnx"]) as runner, pytest.raises(UserError, match="float32"):
        runner(np.zeros((1, 1, 8, 8), dtype=np.float64))


def test_open_runner_rejects_bad_requests(artifacts, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="opens onnx artifacts, not torch"):
        open_runner("onnxruntime", artifacts["torch"])
    with pytest.raises(UserError, match="unknown option.*provider"):
        open_runner("onnxruntime", artifacts["onnx"], provider=["CPU"])
    with pytest.raises(UserError, match="did you mean 'onnxruntime'"):
        open_runner("onnxrutime", artifacts["onnx"])
    with pytest.raises(UserError, match="not found"):
        open_runner("onnxruntime", tmp_path / "missing.onnx")
    with pytest.raises(UserError, match="unknown artifact suffix"):
        open_runner("onnxruntime", artifacts["onnx"].with_suffix(".bin"))


def test_missing_execution_provider_is_named_not_silently_replaced(artifacts) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():  # the CPU-only onnxruntime package
        with pytest.raises(UserError, match="CUDAExecutionProvider is not available"):
            open_runner("onnxruntime", artifacts["onnx"], providers=["cuda", "cpu"])
    else:  # onnxruntime-gpu: the CUDA provider runs the model, or the runner says it did not start; never a CPU run
        try:
            with open_runner("onnxruntime", artifacts["onnx"], providers=["cuda", "cpu"]) as runner:
                assert runner.describe()["providers"] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
        except UserError as exc:
            assert "execution provider CUDAExecutionProvider failed to start" in str(exc)
    with open_runner("onnxruntime", artifacts["onnx"], providers=["cpu"]) as runner:  # short names resolve
        assert runner.describe()["providers"] == ["CPUExecutionProvider"]


def test_missing_openvino_device_is_a_user_error(artifacts) -> None:
    with pytest.raises(UserError, match="device 'NPU'"):
        open_runner("openvino", artifacts["onnx"], device="NPU")


def test_checkpoint_without_normalisation_is_not_a_torch_artifact(net, tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    save_checkpoint(path, net, spec=SPEC)
    with pytest.raises(UserError, match="normalize"):
        open_runner("torch", path)


def test_latency_statistics_match_numpy_on_hand_made_data() -> None:
    durations_ms = np.array([1.0, 2.0, 3.0, 4.0, 100.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    stats = latency_stats((durations_ms * 1e6).astype(np.int64))
    assert stats["runs"] == 10
    for q in (50, 90, 99):
        assert stats[f"p{q}"] == pytest.approx(np.percentile(durations_ms, q))
    # by hand: sorted [1..9, 100]; p50 = (5 + 6) / 2; p90 = 9 + 0.1 * (100 - 9); mean = 145 / 10
    assert stats["p50"] == pytest.approx(5.5)
    assert stats["p90"] == pytest.approx(18.1)
    assert stats["mean"] == pytest.approx(14.5)
    assert (stats["min"], stats["max"]) == (1.0, 100.0)
    assert stats["std"] == pytest.approx(np.std(durations_ms))


def test_measure_latency_times_each_run_with_the_injected_clock() -> None:
    now = [0]
    steps = iter([5, 5, 3, 1, 2, 4])  # ms: two warm-up calls, then 3, 1, 2 and 4 ms

    def fn() -> None:
        now[0] += next(steps) * 1_000_000

    stats = measure_latency(fn, warmup=2, runs=4, max_seconds=60, clock=lambda: now[0])
    assert stats["runs"] == 4  # 2 warm-up + 4 timed: the iterator is exactly used up
    assert stats["mean"] == pytest.approx(2.5)
    assert stats["p50"] == pytest.approx(2.5)
    assert (stats["min"], stats["max"]) == (1.0, 4.0)


def test_measure_latency_stops_at_the_time_limit() -> None:
    now = [0]

    def fn() -> None:
        now[0] += 400_000_000

    stats = measure_latency(fn, warmup=0, runs=100, max_seconds=1.0, clock=lambda: now[0])
    assert stats["runs"] == 3  # 400 ms each: the third run ends past the 1 s deadline
    assert stats["p50"] == pytest.approx(400.0)
    with pytest.raises(ValueError):
        measure_latency(lambda: None, warmup=0, runs=0)


def test_interleaved_calls_times_every_function_in_blocks_in_varying_order() -> None:
    """Three functions taking 1, 2 and 3 ms of a fake clock: each series holds exactly its own durations, every
    round gives each one block (one untimed call, then two timed), and the order of the rounds is not one cycle."""
    now, calls = [0], []

    def make(index: int):  # noqa: ANN202
        def fn() -> None:
            now[0] += (index + 1) * 1_000_000
            calls.append(index)
        return fn

    series = interleaved_calls([make(i) for i in range(3)], rounds=30, runs=2, warmup=2, block_warmup=1,
                               clock=lambda: now[0])
    assert series == [[1_000_000] * 60, [2_000_000] * 60, [3_000_000] * 60]
    assert calls[:6] == [0, 0, 1, 1, 2, 2] and len(calls) == 6 + 30 * 3 * 3
    rounds = [tuple(calls[6 + 9 * r: 15 + 9 * r]) for r in range(30)]
    assert all(sorted(r) == [0, 0, 0, 1, 1, 1, 2, 2, 2] and r[0] == r[1] == r[2] for r in rounds)
    assert len(set(rounds)) > 1
    with pytest.raises(ValueError):
        interleaved_calls([lambda: None], rounds=0)
