"""Timing networks for LayerMerge: the exported network runs on the runtime, in an explicit precision; networks
timed interleaved get the calls the settings ask for; the settings that change a timing change its cache key."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.bench.latency import INTERLEAVE_BLOCK_WARMUP
from edgekd.errors import UserError
from edgekd.prune.latency import LatencySettings, measure_interleaved, measure_module

FAST = dict(device="test-cpu", options={"threads": 1}, warmup=1, runs=3, max_seconds=30.0)


def _net() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)), \
        torch.rand(2, 1, 8, 8)


def _recording(monkeypatch) -> list[dict]:
    """Record every runner measure_module opens: its runtime, precision, calls and last output."""
    import edgekd.runtime

    seen: list[dict] = []
    real = edgekd.runtime.open_runner

    class Recording:
        def __init__(self, runner, record: dict) -> None:
            self.runner, self.record = runner, record

        def __enter__(self):
            self.runner.__enter__()
            return self

        def __exit__(self, *exc):
            return self.runner.__exit__(*exc)

        def __call__(self, x):
            self.record["calls"] += 1
            self.record["output"] = self.runner(x)
            return self.record["output"]

    def recording(runtime, path, **options):
        runner = real(runtime, path, **options)
        seen.append({"runtime": runtime, "precision": runner.describe().get("inference_precision"), "calls": 0})
        return Recording(runner, seen[-1])

    monkeypatch.setattr(edgekd.runtime, "open_runner", recording)
    return seen


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_the_network_runs_as_exported_warmup_plus_runs_times(runtime: str, monkeypatch) -> None:
    seen = _recording(monkeypatch)
    net, x = _net()
    stats = measure_module(net, x, LatencySettings(**{**FAST, "runtime": runtime}))
    (record,) = seen
    assert record["runtime"] == runtime and record["calls"] == 1 + 3 and stats["p50"] > 0
    with torch.no_grad():
        expected = net(x).numpy()
    np.testing.assert_allclose(record["output"], expected, rtol=1e-4, atol=1e-5)


def test_interleaved_calls_are_counted_by_the_settings_and_stop_at_max_seconds() -> None:
    counts = [0, 0]

    def call(i: int):
        def fn() -> None:
            counts[i] += 1
        return fn

    # runs 45 in blocks of 20: three rounds, each block after its untimed calls; 2 warm-up calls of each first
    stats = measure_interleaved([call(0), call(1)], LatencySettings(**{**FAST, "warmup": 2, "runs": 45,
                                                                        "max_seconds": None}))
    assert [s["runs"] for s in stats] == [60, 60]
    assert counts == [2 + 3 * (INTERLEAVE_BLOCK_WARMUP + 20)] * 2
    counts[:] = [0, 0]  # past max_seconds after the first round: one round only
    stats = measure_interleaved([call(0), call(1)], LatencySettings(**{**FAST, "warmup": 2, "runs": 45,
                                                                        "max_seconds": 0.0}))
    assert [s["runs"] for s in stats] == [20, 20] and counts == [2 + INTERLEAVE_BLOCK_WARMUP + 20] * 2
    stats = measure_interleaved([call(0)], LatencySettings(**{**FAST, "runs": 3}))  # a block no longer than runs
    assert stats[0]["runs"] == 3


def test_openvino_network_runs_in_f32(monkeypatch) -> None:
    seen = _recording(monkeypatch)
    net, x = _net()
    measure_module(net, x, LatencySettings(**{**FAST, "runtime": "openvino"}))
    assert [r["precision"] for r in seen] == ["f32"]  # never OpenVINO's bf16 default on this CPU


def test_cache_key_changes_with_runtime_precision_device_and_statistic() -> None:
    keys = [LatencySettings(**FAST).cache_key(), LatencySettings(**{**FAST, "device": "other"}).cache_key(),
            LatencySettings(**{**FAST, "runtime": "openvino"}).cache_key(),
            LatencySettings(**{**FAST, "runtime": "openvino", "precision": "bf16"}).cache_key()]
    assert len({repr(sorted(k.items())) for k in keys}) == 4
    assert keys[0]["libraries"]["onnxruntime"] and keys[2]["options"]["inference_precision"] == "f32"
    # a timing log keeps one summary of each timed loop: a log of medians is no log of minima
    assert LatencySettings(**{**FAST, "statistic": "min"}).cache_key() == {**keys[0], "statistic": "min"}


def test_openvino_precision_is_always_explicit() -> None:
    assert LatencySettings(device="d", runtime="openvino").runner_options()["inference_precision"] == "f32"
    assert LatencySettings(device="d", runtime="openvino", precision="bf16").runner_options()[
        "inference_precision"] == "bf16"
    with pytest.raises(UserError, match="contradicts"):
        LatencySettings(device="d", runtime="openvino", options={"inference_precision": "bf16"}).runner_options()
    with pytest.raises(UserError, match="fp32"):
        LatencySettings(device="d", runtime="onnxruntime", precision="fp16").runner_options()
    with pytest.raises(UserError, match="not supported"):
        LatencySettings(device="d", runtime="tensorrt").runner_options()


def test_onnxruntime_table_sessions_do_not_spin(tmp_path) -> None:
    from edgekd.export.onnx import torchscript_onnx_export
    from edgekd.runtime import open_runner

    options = LatencySettings(**FAST).runner_options()
    assert options["spinning"] is False  # two sessions timed interleaved would spin against each other
    net, x = _net()
    path = tmp_path / "net.onnx"
    torchscript_onnx_export(net.eval(), x, path, opset=17, dynamic_batch=False)
    entry = "session.intra_op.allow_spinning"
    with open_runner("onnxruntime", path, **options) as runner:
        assert runner.session.get_session_options().get_session_config_entry(entry) == "0"
    with open_runner("onnxruntime", path, threads=1) as runner:  # any other session: ONNX Runtime's default
        with pytest.raises(RuntimeError, match="does not have configuration"):
            runner.session.get_session_options().get_session_config_entry(entry)
