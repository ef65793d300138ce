"""The measurement protocol (statistics, warm-up, stop rules, stability flag), inputs bound once, the device runner
run locally, the result schema, and the parsers of benchmark_app / trtexec / onnxruntime_perf_test reports."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekd.bench import device_runner as dr
from edgekd.bench.measure import LocalTarget, bench_artifact
from edgekd.bench.result import load_result
from edgekd.config import BenchConfig
from edgekd.errors import UserError
from edgekd.export import export_onnx
from edgekd.models import create
from edgekd.runtime import open_runner, save_torch_artifact
from edgekd.runtimes import runtime_module
from edgekd.runtimes.onnxruntime.native import parse_onnxruntime_perf_test
from edgekd.runtimes.openvino.native import parse_benchmark_app
from edgekd.runtimes.tensorrt.native import parse_trtexec
from tests.conftest import ROOT

FIXTURES = Path(__file__).parent / "fixtures" / "bench"
MEAN, STD = [0.25], [0.5]


class FakeClock:
    """A nanosecond clock that only moves when a fake call advances it."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now

    def step(self, ms: float) -> None:
        self.now += int(ms * 1e6)


def test_statistics_match_numpy_on_known_samples() -> None:
    ms = np.array([1.0, 2.0, 3.0, 4.0, 100.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    stats = dr.summarize((ms * 1e6).astype(np.int64), batch_size=4)
    for q in (50, 90, 95, 99):
        assert stats[f"p{q}"] == pytest.approx(np.percentile(ms, q))
    # by hand: sorted [1..9, 100]; p95 = 9 + 0.55 * 91; mean 14.5; throughput = 4 samples / 14.5 ms
    assert stats["p95"] == pytest.approx(59.05)
    assert stats["mean"] == pytest.approx(14.5)
    assert stats["std"] == pytest.approx(np.std(ms))
    assert stats["cv"] == pytest.approx(np.std(ms) / 14.5)
    assert stats["throughput_per_s"] == pytest.approx(4 / 14.5e-3)
    assert (stats["min"], stats["max"], stats["runs"]) == (1.0, 100.0, 10)


def test_warmup_by_count_and_by_time_then_runs_or_minimum_duration() -> None:
    clock = FakeClock()
    calls = []

    def fn() -> None:
        calls.append(1)
        clock.step(2.0)

    durations = dr.timed_loop(fn, warmup_runs=3, warmup_seconds=0.010, runs=5, min_seconds=0.030, max_seconds=10,
                              clock=clock)
    # warm-up: 3 calls would take 6 ms < 10 ms, so 5 calls; timed: 5 calls take 10 ms < 30 ms, so 15 calls
    assert len(calls) - len(durations) == 5
    assert len(durations) == 15 and set(durations) == {2_000_000}


def test_max_seconds_stops_the_timed_loop() -> None:
    clock = FakeClock()
    durations = dr.timed_loop(lambda: clock.step(400), warmup_runs=0, runs=100, max_seconds=1.0, clock=clock)
    assert len(durations) == 3  # the third 400 ms call ends past the 1 s limit
    with pytest.raises(ValueError):
        dr.timed_loop(lambda: None, runs=0)


def test_cv_flags_a_jittery_callable_and_passes_a_steady_one() -> None:
    clock = FakeClock()
    jitter = iter(np.random.default_rng(0).choice([1.0, 1.0, 1.0, 6.0], size=1000))
    stats = dr.summarize(dr.timed_loop(lambda: clock.step(next(jitter)), warmup_runs=0, runs=200, clock=clock))
    flag = dr.stability(stats, cv_threshold=0.10)
    assert flag["unstable"] and "unstable" in flag["note"] and stats["cv"] > 0.5
    steady = dr.summarize(dr.timed_loop(lambda: clock.step(1.0), warmup_runs=0, runs=200, clock=clock))
    assert steady["cv"] == 0 and not dr.stability(steady, 0.10)["unstable"]


def test_harness_overhead_is_measured_through_the_same_loop() -> None:
    overhead = dr.harness_overhead(runs=200)
    assert overhead["runs"] == 200 and 0 <= overhead["p50"] < 1.0  # an empty call: well under a millisecond


def test_raspberry_pi_throttled_flags_decoded_bit_by_bit() -> None:
    # 0x50005 = bits 0, 2, 16, 18 (firmware docs: under-voltage and throttling, now and since boot)
    assert dr.throttled("throttled=0x50005")["flags"] == ["under-voltage now", "throttled now",
                                                          "under-voltage occurred", "throttling occurred"]
    assert dr.throttled("throttled=0x0")["flags"] == []


def test_environment_says_why_something_is_not_available() -> None:
    env = dr.environment()
    assert env["cpu"]["model"] and isinstance(env["cpu"]["flags"], list)
    jetson = env["jetson"]
    assert isinstance(jetson, dict) or jetson.startswith("not available (")
    assert len(env["load_average"]) == 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.manual_seed(0)
    net = create("plain2", num_classes=3, in_channels=1).eval()
    root = tmp_path_factory.mktemp("bench")
    pt = save_torch_artifact(net, {"name": "plain2", "kwargs": {"num_classes": 3, "in_channels": 1}}, MEAN, STD,
                             root / "model.pt")
    onnx = export_onnx(net, MEAN, STD, torch.rand(2, 1, 8, 8), root / "model.onnx")
    import openvino as ov

    xml = root / "model.xml"
    # an fp32 IR (save_model compresses weights to fp16 by default, which makes it an fp16 artifact: computed in f16
    # on CPUs with fp16 arithmetic, e.g. AMX-FP16 Xeons)
    ov.save_model(ov.convert_model(str(onnx)), str(xml), compress_to_fp16=False)
    return {"torch": pt, "onnxruntime": onnx, "openvino": xml}


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime", "openvino"])
def test_bound_inputs_give_the_same_logits_as_the_normal_call(tiny, runtime: str) -> None:
    x = np.random.default_rng(1).random((4, 1, 8, 8), dtype=np.float32)
    with open_runner(runtime, tiny[runtime], threads=1) as runner:
        expected = runner(x)
        bound = runner.bind(x)
        bound.call()
        np.testing.assert_allclose(bound.output(), expected, rtol=1e-5, atol=1e-6)
    settings = {"threads": 1} if runtime != "openvino" else {"config": {"INFERENCE_PRECISION_HINT": "f32"}}
    module = importlib.import_module(runtime_module(runtime, "session"))
    session = dr.open_session(module, str(tiny[runtime]), settings, shape=x.shape)
    call, output, _ = session.bind(x)
    call()  # the device runner's own binding (the file copied to boards) agrees too
    np.testing.assert_allclose(np.asarray(output()), expected, rtol=1e-5, atol=1e-6)


def test_local_device_runner_reports_every_figure(tiny) -> None:
    cfg = BenchConfig(warmup=2, runs=10, max_seconds=5, batch_sizes=[3])
    metrics = bench_artifact(tiny["onnxruntime"], "onnxruntime", {"threads": 1}, cfg, LocalTarget())
    assert set(metrics["latency_ms"]) >= {"p50", "p90", "p95", "p99", "mean", "std", "min", "max", "cv",
                                          "throughput_per_s"}
    assert metrics["latency_ms"]["runs"] >= 10 and [b["batch_size"] for b in metrics["batches"]] == [1, 3]
    assert metrics["batches"][1]["output_shape"] == [3, 3]
    assert metrics["compute"]["inference_precision"] == "f32" and metrics["compute"]["threads"] == 1
    assert metrics["memory"]["peak_rss_mb"] > 10 and metrics["memory"]["method"].startswith("VmHWM")
    assert metrics["cold_start"]["cold_start_ms"] >= metrics["cold_start"]["first_inference_ms"] > 0
    assert metrics["harness_overhead_ms"]["p50"] < metrics["latency_ms"]["p50"]


def test_corrupt_artifact_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(UserError, match="ONNX Runtime cannot load this model") as info:
        bench_artifact(bad, "onnxruntime", {"threads": 1}, BenchConfig(runs=2, warmup=0), LocalTarget())
    assert "\n" not in str(info.value) and info.value.exit_code == 2


def _valid_result() -> dict:
    stats = dr.summarize([1_000_000, 2_000_000])
    return {"schema": 1, "ok": True, "runtime": {}, "cold_start": {"import_ms": 1, "load_ms": 1,
            "first_inference_ms": 1, "cold_start_ms": 2, "note": ""}, "memory": {"peak_rss_mb": 1, "method": "x"},
            "harness_overhead_ms": stats, "environment": {}, "input": {}, "files": [],
            "protocol": {"warmup_runs": 0, "warmup_seconds": 0, "runs": 1, "min_seconds": 0, "max_seconds": 1,
                         "cv_threshold": 0.1},
            "batches": [{"batch_size": 1, "latency_ms": stats, "stability": dr.stability(stats, 0.1),
                         "output_shape": [1, 3], "energy": "energy: not available (test)"}]}


@pytest.mark.parametrize("tamper, message", [
    (lambda r: r.update(files=["../../etc/passwd"]), "outside the run folder"),
    (lambda r: r.update(files=["/etc/passwd"]), "outside the run folder"),
    (lambda r: r["batches"][0]["latency_ms"].update(p50=float("nan")), "finite"),
    (lambda r: r.update(extra="x"), "Extra inputs"),
    (lambda r: r["batches"][0]["latency_ms"].update(p50=-1.0), "greater than or equal"),
])
def test_result_from_a_device_is_schema_checked(tmp_path: Path, tamper, message: str) -> None:
    path = tmp_path / "result.json"
    path.write_text(json.dumps(_valid_result()))
    assert load_result(path, "dev").ok
    result = _valid_result()
    tamper(result)
    path.write_text(json.dumps(result))
    with pytest.raises(UserError, match=message):
        load_result(path, "dev")


def test_benchmark_app_report_produced_here() -> None:
    report = parse_benchmark_app((FIXTURES / "benchmark_app_fmnist_fp32.txt").read_text())
    assert report["latency_ms"] == {"median": 0.15, "mean": 1.90, "min": 0.11, "max": 99.82}
    assert (report["count"], report["throughput_fps"], report["first_inference_ms"]) == (2000, 511.05, 67.90)
    micro = "[ INFO ] Latency:\n[ INFO ]    Median:        45.30 us\n[ INFO ]    Average:       47.10 us\n"
    assert parse_benchmark_app(micro)["latency_ms"]["median"] == pytest.approx(0.0453)  # printed in us under 1 ms
    with pytest.raises(ValueError, match="Median"):
        parse_benchmark_app("[Step 10/11] Measuring performance")


def test_trtexec_performance_summary_from_an_issue() -> None:
    report = parse_trtexec((FIXTURES / "trtexec_performance_summary.txt").read_text())
    assert report["throughput_qps"] == 130.298
    assert report["gpu_compute"] == {"min": 5.34595, "max": 13.3388, "mean": 7.58404, "median": 7.14139,
                                     "p90": 10.2881, "p95": 10.8175, "p99": 12.9485}
    assert report["latency"]["median"] == 7.16092 and report["d2h"]["p99"] == 0.0994873
    unstable = parse_trtexec((FIXTURES / "trtexec_unstable.txt").read_text())
    assert unstable["cv_percent"] == 5.55763
    assert unstable["gpu_compute"]["median"] == 3.71753 and unstable["latency"]["p99"] == 6.17407


def test_onnxruntime_perf_test_reports_from_its_docs() -> None:
    readme = parse_onnxruntime_perf_test((FIXTURES / "onnxruntime_perf_test_readme.txt").read_text())
    assert readme["mean_ms"] == 58.8053 and readme["requests"] == 1000
    assert readme["latency_ms"]["p50"] == pytest.approx(58.7108) and readme["latency_ms"]["p999"] == pytest.approx(
        62.3472)
    session = parse_onnxruntime_perf_test((FIXTURES / "onnxruntime_perf_test_session.txt").read_text())
    assert session["session_creation_ms"] == pytest.approx(1841.49) and session["mean_ms"] == 734.606
    assert session["requests"] == 1


def test_tegrastats_lines_from_real_boards() -> None:
    orin, tx2 = [line for line in (FIXTURES / "tegrastats.txt").read_text().splitlines() if not line.startswith("#")]
    a = dr.parse_tegrastats(orin)
    assert a["ram_mb"] == {"used": 4321, "total": 62801} and len(a["cpu"]) == 12 and a["cpu"][0] == {"load": 0,
                                                                                                   "mhz": 729}
    assert a["temperature_c"]["tj"] == 44.343 and a["gpu_load"] == 0
    # AGX Orin prints no VDD_IN: the rails are summed, 2340 + 390 + 4025 + 0 + 301 (+ 0) mW
    assert a["power_mw"] == 7056 and a["power_source"] == "sum of rails"
    b = dr.parse_tegrastats(tx2)
    assert b["power_mw"] == 3140 and b["power_source"] == "VDD_IN" and b["rails"]["VDD_SYS_GPU"] == {"mw": 153,
                                                                                                   "avg_mw": 158}
    assert b["cpu"][1] == {"load": 21, "mhz": 345} and b["temperature_c"]["PMIC"] == 100.0


def test_rapl_energy_from_powercap_with_wrap_around(tmp_path: Path) -> None:
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (zone / "name").write_text("package-0\n")
    (zone / "max_energy_range_uj").write_text("1000000\n")
    (zone / "energy_uj").write_text("900000\n")
    meter = dr.EnergyMeter(powercap=str(tmp_path))
    meter.start()
    (zone / "energy_uj").write_text("100000\n")  # wrapped: 900000 -> 1000000 -> 100000 is 0.2 J
    energy = meter.stop(calls=100)
    assert energy["joules"] == pytest.approx(0.2) and energy["mj_per_inference"] == pytest.approx(2.0)
    assert "package-0" in energy["method"]
    missing = dr.EnergyMeter(powercap=str(tmp_path / "absent"))
    missing.start()
    if missing.why:  # no tegrastats on this machine either: the reason, never a blank
        assert missing.stop(calls=1).startswith("energy: not available (")


def test_cli_bench_compare_native_runs_benchmark_app_on_the_same_ir(tiny, tmp_path: Path) -> None:
    from tests.conftest import run_cli

    out = tmp_path / "bench.json"
    done = run_cli("bench", str(tiny["openvino"]), "--device", "x86-cpu", "--runs", "50", "--compare-native",
                   "--json", str(out), timeout=300)
    assert done.returncode == 0, done.stderr
    metrics = json.loads(out.read_text())["metrics"]
    native = metrics["native"]
    command = native["command"]  # same IR, threads, precision, one sync request, the static shape edgekd ran
    for flag, value in (("-m", str(tiny["openvino"])), ("-nthreads", "2"), ("-infer_precision", "f32"),
                        ("-shape", "[1,1,8,8]"), ("-hint", "none"), ("-nireq", "1"), ("-api", "sync")):
        assert command[command.index(flag) + 1] == value
    assert native["count"] == metrics["latency_ms"]["runs"] and native["latency_ms"]["median"] > 0
    assert native["edgekd_vs_native"] == pytest.approx(metrics["latency_ms"]["p50"] / native["latency_ms"]["median"]
                                                       - 1)
    assert "benchmark_app median ms" in done.stdout
    refused = run_cli("bench", str(tiny["onnxruntime"]), "--device", "x86-cpu", "--compare-native", timeout=120)
    assert refused.returncode == 2 and "benchmark_app" in refused.stderr and "Traceback" not in refused.stderr


def test_a_user_model_that_imports_cprofile_is_benchmarked_like_any_other(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The device runner runs from a folder of its own: none of edgekd's folders is on its ``sys.path``, so no
    edgekd module (``edgekd/bench/profile.py``) shadows the standard library's ``profile`` that ``cProfile``
    imports."""
    (tmp_path / "cprofile_user_models.py").write_text(
        "import cProfile  # noqa: F401\nimport profile\n\nfrom torch import nn\n\n"
        "if not hasattr(profile, 'Profile'):\n"
        "    raise ImportError('the standard library profile is shadowed by ' + str(profile.__file__))\n\n\n"
        "def factory(num_classes, in_channels=1):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 64, num_classes))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    net = create("cprofile_user_models:factory", num_classes=3)
    pt = save_torch_artifact(net, {"name": "cprofile_user_models:factory", "kwargs": {"num_classes": 3}}, MEAN, STD,
                             tmp_path / "model.pt")
    cfg = BenchConfig(warmup=1, runs=3, max_seconds=2)
    metrics = bench_artifact(pt, "torch", {"threads": 1}, cfg, LocalTarget(), sample_shape=[1, 8, 8])
    assert metrics["latency_ms"]["runs"] >= 3 and metrics["batches"][0]["output_shape"] == [1, 3]
