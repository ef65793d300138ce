"""Device fleets: one artifact timed on several device profiles in one call. Two ssh "devices" are two profiles of
the real sshd on 127.0.0.1 (the fixture of ``tests/test_remote.py``); a device whose port is closed fails its
pre-flight, naming that device, before anything is timed."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import pytest
from rich.console import Console

from edgekd.bench import fleet
from edgekd.bench.fleet import BenchJob, bench_fleet, lanes
from edgekd.cli_bench import bench_command
from edgekd.config import BenchConfig, Device, ExecutionConfig, load_device
from edgekd.config.device import Access
from edgekd.errors import UserError
from edgekd.executor import Executor, ray_available
from tests import test_remote
from tests.conftest import ROOT, run_cli
from tests.test_remote import SSHD, _free_port

sshd, onnx = test_remote.sshd, test_remote.onnx  # the fixtures of the ssh tests

needs_sshd = pytest.mark.skipif(not SSHD.exists() or shutil.which("ssh") is None,
                                reason="needs Debian's openssh-server (/usr/sbin/sshd) and the ssh client")
CFG = BenchConfig(warmup=2, runs=10, max_seconds=5)


def _device(name: str, kind: str = "local") -> Device:
    access = {"kind": kind} if kind == "local" else {"kind": kind, "host": f"{name}.lan"}
    return Device.model_validate({"name": name, "access": access, "runtimes": [{"runtime": "onnxruntime"}]})


def test_remote_devices_get_a_lane_each_and_local_devices_share_one() -> None:
    a, b, c, d = _device("a"), _device("pi", "ssh"), _device("b"), _device("jetson", "ssh")
    assert [[x.name for x in lane] for lane in lanes([a, b, c, d])] == [["a", "b"], ["pi"], ["jetson"]]
    assert [[x.name for x in lane] for lane in lanes([b, d])] == [["pi"], ["jetson"]]


def _profile(folder: Path, name: str, access: Access, port: int | None = None) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"""name: {name}
threads: 1
access: {{kind: ssh, host: 127.0.0.1, user: {access.user}, port: {port or access.port},
          identity_file: {access.identity_file}, known_hosts: {access.known_hosts}, workdir: {access.workdir},
          python: {sys.executable}}}
runtimes: [{{runtime: onnxruntime, precisions: [fp32]}}]
""")
    return path


@needs_sshd
def test_two_ssh_devices_in_one_bench_call_give_a_table_and_a_row_each(sshd, onnx: Path, tmp_path: Path) -> None:
    pi, jetson = _profile(tmp_path, "pi", sshd["access"]), _profile(tmp_path, "jetson", sshd["access"])
    report = tmp_path / "fleet.json"
    done = run_cli("bench", str(onnx), "--device", str(pi), "--device", str(jetson), "--runs", "10", "--warmup", "2",
                   "--backend", "sequential", "--json", str(report), timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "edgekd bench on pi" in done.stdout and "edgekd bench on jetson" in done.stdout
    written = json.loads(report.read_text())
    assert written["runtime"] == "onnxruntime" and [r["device"] for r in written["devices"]] == ["pi", "jetson"]
    target = f"ssh://{sshd['access'].user}@127.0.0.1:{sshd['access'].port}"
    for row in written["devices"]:
        assert row["metrics"]["target"] == target
        assert row["metrics"]["latency_ms"]["runs"] >= 10 and row["metrics"]["latency_ms"]["p50"] > 0


@needs_sshd
@pytest.mark.skipif(not ray_available(), reason="Ray is not installed (pip install 'edgekd[ray]')")
def test_sequential_and_ray_give_the_same_rows(sshd, onnx: Path, tmp_path: Path) -> None:
    devices = [load_device(str(_profile(tmp_path, name, sshd["access"]))) for name in ("pi", "jetson")]
    options = {d.name: {"threads": 1} for d in devices}
    jobs = [BenchJob("model.onnx", onnx, "onnxruntime", options)]

    def rows(backend: str) -> list[tuple[str, str, str, int]]:
        found = bench_fleet(devices, jobs, CFG, Executor(ExecutionConfig(backend=backend)))  # type: ignore[arg-type]
        return [(r["artifact"], r["device"], r["metrics"]["target"], r["metrics"]["latency_ms"]["runs"] >= 10)
                for r in found]

    target = f"ssh://{sshd['access'].user}@127.0.0.1:{sshd['access'].port}"
    expected = [("model.onnx", "pi", target, True), ("model.onnx", "jetson", target, True)]
    assert rows("sequential") == expected
    assert rows("ray") == expected


@needs_sshd
def test_a_closed_port_fails_pre_flight_naming_the_device_before_any_timing(
        sshd, onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = _profile(tmp_path, "pi", sshd["access"])
    bad = _profile(tmp_path, "jetson", sshd["access"], port=_free_port())
    timed: list[str] = []
    monkeypatch.setattr(fleet, "measure", lambda device, job, cfg: timed.append(device.name))
    with pytest.raises(UserError, match=r"^device jetson: .*Connection refused") as info:
        bench_command(Console(file=io.StringIO()), onnx, [str(good), str(bad)], runs=5, warmup=1,
                      min_seconds=0, batch_size=1, runtime=None, precision=None, compare_native=False,
                      json_out=None, execution=ExecutionConfig(backend="sequential"))
    assert timed == [] and "\n" not in str(info.value)
    done = run_cli("bench", str(onnx), "--device", str(good), "--device", str(bad), "--runs", "5", timeout=120)
    assert done.returncode == 2, done.stderr
    assert "device jetson:" in done.stderr and "Traceback" not in done.stderr
    checked = run_cli("validate", str(ROOT / "pipelines" / "quickstart.yaml"), "--device", "x86-cpu",
                      "--set", f"bench.fleet=[{good}, {bad}]", timeout=120)
    assert checked.returncode == 2 and "device jetson:" in checked.stderr, checked.stderr


QUICK = ["--set", "teacher.model.name=plain4", "--set", "student.model.name=plain2", "--set", "teacher.train.epochs=1",
         "--set", "distill.train.epochs=1", "--set", "bench={warmup: 2, runs: 10, profile_layers: 0}"]


@needs_sshd
@pytest.mark.slow
def test_a_run_times_every_artifact_on_its_device_and_on_the_fleet(sshd, tmp_path: Path) -> None:
    pi, jetson = _profile(tmp_path, "pi", sshd["access"]), _profile(tmp_path, "jetson", sshd["access"])
    out = tmp_path / "run"
    done = run_cli("run", str(ROOT / "pipelines" / "quickstart.yaml"), "--device", "x86-cpu", "--smoke", *QUICK,
                   "--set", f"bench.fleet=[{pi}, {jetson}]", "--set", "execution.backend=sequential",
                   "--out", str(out), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    onnx_models = [a for a in manifest["artifacts"] if a["runtime"] == "onnxruntime"]
    torch_models = [a for a in manifest["artifacts"] if a["runtime"] == "torch"]
    assert onnx_models and torch_models
    target = f"ssh://{sshd['access'].user}@127.0.0.1:{sshd['access'].port}"
    for artifact in onnx_models:
        metrics = artifact["metrics"]
        assert metrics["target"] == "local" and metrics["latency_ms"]["p50"] > 0  # the run's own device, as before
        assert list(metrics["fleet"]) == ["pi", "jetson"]
        for device in ("pi", "jetson"):
            assert metrics["fleet"][device]["target"] == target and metrics["fleet"][device]["latency_ms"]["runs"] >= 10
    assert all("fleet" not in a["metrics"] for a in torch_models)  # the fleet's profiles offer onnxruntime only
    report = (out / "report.md").read_text()
    assert "### Fleet" in report and "| x86-cpu (run's device) | pi | jetson |" in report
    p50 = onnx_models[0]["metrics"]["fleet"]["pi"]["latency_ms"]["p50"]
    assert f"{p50:.4f}" in report


def test_an_unknown_fleet_device_is_exit_2_naming_the_key(tmp_path: Path) -> None:
    done = run_cli("validate", str(ROOT / "pipelines" / "quickstart.yaml"), "--device", "x86-cpu",
                   "--set", f"bench.fleet=[{tmp_path / 'absent.yaml'}]", timeout=120)
    assert done.returncode == 2, done.stderr
    assert "bench.fleet" in done.stderr and "absent.yaml" in done.stderr and "Traceback" not in done.stderr


def test_the_fleet_table_has_a_row_per_artifact_and_a_column_per_device() -> None:
    from edgekd.report.measurement import fleet_section

    timed = {"latency_ms": {"p50": 1.25}}
    manifest = {"device": "x86-cpu", "artifacts": [
        {"name": "student.onnx", "metrics": {"latency_ms": {"p50": 0.5},
                                             "fleet": {"pi": timed, "jetson": {"error": "x"}}}},
        {"name": "student-int8.onnx", "metrics": {"fleet": {"jetson": timed}}},
        {"name": "student.pt", "metrics": {"latency_ms": {"p50": 2.0}}}]}
    table = "\n".join(fleet_section(manifest)).splitlines()
    assert "| artifact | x86-cpu (run's device) | pi | jetson |" in table
    assert "| student.onnx | 0.5000 | 1.2500 | failed |" in table
    assert "| student-int8.onnx | — | — | 1.2500 |" in table
    assert not any("student.pt" in line for line in table) and fleet_section({"artifacts": []}) == []
