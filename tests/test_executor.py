"""The executor of independent sub-runs: in sequence and on Ray (in-process, and a 2-node cluster on 127.0.0.1),
the same ablation records; a worker killed mid-task is retried; a restart after Ctrl-C recomputes nothing finished."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from edgekd.config import ExecutionConfig, Recipe
from edgekd.errors import UserError
from edgekd.executor import Executor, ray_available
from tests.conftest import ROOT, run_cli, start_cli

needs_ray = pytest.mark.skipif(not ray_available(), reason="Ray is not installed (pip install 'edgekd[ray]')")

# digits in --smoke (one epoch on 512 images), a plain teacher, a ResNet-8 student: 3 variants x 2 seeds = 6 sub-runs
ABLATION = [
    "run", str(ROOT / "pipelines" / "quickstart.yaml"), "--device", "x86-cpu", "--smoke",
    "--set", "teacher.model.name=plain4",
    "--set", "ablation={seeds: [0, 1], variants: [no-kd, kd, dkd], train: {epochs: 1, batch_size: 16, lr: 0.05}}",
    "--set", "export=null", "--set", "evaluate=null", "--set", "bench=null", "--set", "report=null",
]
SEQUENTIAL = ["--set", "execution.backend=sequential"]


def test_sequential_map_keeps_order_and_runs_each_task_with_the_declared_threads() -> None:
    before = torch.get_num_threads()
    executor = Executor(ExecutionConfig(backend="sequential", threads_per_task=1))
    done: list[int] = []
    assert executor.map(pow, [(2, 3), (3, 2), (5, 0)], on_done=lambda i, r: done.append(i)) == [8, 9, 1]
    assert done == [0, 1, 2]
    assert executor.map(torch.get_num_threads, [()]) == [1] and torch.get_num_threads() == before
    assert executor.map(divmod, [(7,), (9,)], shared=(23,)) == [(3, 2), (2, 5)]  # shared arguments go first


def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Recipe.model_validate({"name": "x"}).execution == ExecutionConfig()
    with pytest.raises(ValueError, match="backend"):
        ExecutionConfig.model_validate({"backend": "dask"})
    monkeypatch.setattr("edgekd.executor.ray_available", lambda: False)
    assert Executor(ExecutionConfig()).backend == "sequential"  # auto without Ray
    with pytest.raises(UserError, match="Ray is not installed"):
        Executor(ExecutionConfig(backend="ray"))


@needs_ray
def test_ray_map_in_process_threads_order_and_errors() -> None:
    import ray

    from edgekd.config import load_device

    executor = Executor(ExecutionConfig(backend="ray", threads_per_task=1))
    try:
        assert executor.map(pow, [(2, 3), (3, 2), (5, 0)]) == [8, 9, 1]
        assert executor.map(torch.get_num_threads, [(), ()]) == [1, 1]  # tasks are functions workers can import
        with pytest.raises(UserError, match="unknown device 'no-such-device'"):  # the task's own exception
            executor.map(load_device, [("no-such-device",)])
    finally:
        ray.shutdown()


@needs_ray
def test_a_local_ray_that_does_not_start_gives_way_to_sequential_unless_ray_was_asked_for(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import ray

    def timed_out(**_: Any) -> None:  # what ray.init raised when its processes starved on a loaded machine
        raise Exception("The current node timed out during startup.")

    monkeypatch.setattr(ray, "init", timed_out)
    auto = Executor(ExecutionConfig(threads_per_task=1))
    assert auto.backend == "ray"
    assert auto.map(pow, [(2, 3), (3, 2)]) == [8, 9] and auto.backend == "sequential"
    assert "a local Ray did not start (The current node timed out during startup.)" in capsys.readouterr().err
    with pytest.raises(UserError, match="could not start or reach a local Ray: The current node timed out"):
        Executor(ExecutionConfig(backend="ray")).map(pow, [(2, 3)])
    with pytest.raises(UserError, match="could not start or reach the Ray cluster at 10.0.0.9:6379"):
        Executor(ExecutionConfig(address="10.0.0.9:6379")).map(pow, [(2, 3)])


def _ablation(run_dir: Path) -> dict[str, Any]:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return next(s for s in manifest["stages"] if s["name"] == "ablation")["info"]


@pytest.fixture(scope="module")
def sequential_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ablation run in sequence: the reference every other backend must match digit for digit."""
    run_dir = tmp_path_factory.mktemp("sequential") / "run"
    result = run_cli(*ABLATION, *SEQUENTIAL, "--out", str(run_dir), timeout=300)
    assert result.returncode == 0, result.stderr
    return run_dir


def _fresh_copy(reference: Path, run_dir: Path) -> None:
    """The reference run with its ablation undone: the same teacher (so the same sub-run keys), no sub-run."""
    shutil.copytree(reference, run_dir)
    shutil.rmtree(run_dir / "cache" / "ablation")
    (run_dir / "ablation" / "stage.json").unlink()


def _figures(run: dict[str, Any]) -> dict[str, Any]:
    """A sub-run's record without how it was obtained (``reused``: the sub-run, or one of its steps, was loaded from
    an earlier attempt), which a restart legitimately changes."""
    steps = [{k: v for k, v in step.items() if k != "reused"} for step in run["steps"]]
    return {**{k: v for k, v in run.items() if k != "reused"}, "steps": steps}


def _same_records(run_dir: Path, reference: Path) -> list[dict[str, Any]]:
    mine, theirs = _ablation(run_dir), _ablation(reference)
    assert len(mine["runs"]) == 6
    assert [_figures(r) for r in mine["runs"]] == [_figures(r) for r in theirs["runs"]]
    assert mine["table"] == theirs["table"]
    return list(mine["runs"])


@needs_ray
@pytest.mark.slow
def test_local_ray_gives_the_sequential_records(sequential_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _fresh_copy(sequential_run, run_dir)
    result = run_cli(*ABLATION, "--out", str(run_dir), timeout=300)  # default backend: Ray, started in-process
    assert result.returncode == 0, result.stderr
    assert "executor: ray (local), 1 thread(s) per task" in result.stdout + result.stderr
    runs = _same_records(run_dir, sequential_run)
    assert not any(r["reused"] for r in runs)
    assert sorted(p.name for p in (run_dir / "cache" / "ablation").iterdir()) == sorted(
        Path(r["folder"]).name for r in runs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


@needs_ray
@pytest.mark.slow
def test_two_node_cluster_on_localhost_gives_the_sequential_records(sequential_run: Path, tmp_path: Path) -> None:
    """A head and a worker node, one CPU each, started here with ``ray start --block`` (stopping those two
    processes stops their nodes; ``ray stop`` would also stop any other Ray on a shared host)."""
    port = _free_port()
    # Ray's token authentication, as on a real cluster: every node and the driver share one secret
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": "", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    common = ["--num-cpus=1", "--block", "--disable-usage-stats"]
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths live below it
    head = subprocess.Popen([_ray_cli(), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                             "--include-dashboard=false", f"--temp-dir={temp_dir}", *common],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nodes = [head]
    address = f"127.0.0.1:{port}"
    try:
        time.sleep(5)
        nodes.append(subprocess.Popen([_ray_cli(), "start", f"--address={address}", "--node-ip-address=127.0.0.1",
                                       *common], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        count = (f"import ray, time; ray.init(address='{address}'); t = time.time()\n"
                 "while len([n for n in ray.nodes() if n['Alive']]) < 2 and time.time() - t < 150: time.sleep(1)\n"
                 "print(len([n for n in ray.nodes() if n['Alive']]))")
        alive = subprocess.run([sys.executable, "-c", count], env=env, capture_output=True, text=True, timeout=240)
        assert alive.stdout.strip().splitlines()[-1] == "2", alive.stderr
        run_dir = tmp_path / "run"
        _fresh_copy(sequential_run, run_dir)
        result = run_cli(*ABLATION, "--out", str(run_dir), "--ray-address", address, timeout=300, env=env)
        assert result.returncode == 0, result.stderr
        assert f"executor: ray at {address}" in result.stdout + result.stderr
        _same_records(run_dir, sequential_run)
    finally:
        for node in reversed(nodes):
            node.send_signal(signal.SIGTERM)
        for node in reversed(nodes):
            try:
                node.wait(timeout=60)
            except subprocess.TimeoutExpired:
                node.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _task_workers() -> list[int]:
    """Pids of Ray worker processes running the executor's task (Ray titles them ``ray::_call``)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(b"ray::_call"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _start(run_dir: Path) -> subprocess.Popen[str]:
    return start_cli(*ABLATION, "--out", str(run_dir))


def _wait_for(condition: Any, process: subprocess.Popen[str], timeout: float = 240) -> None:
    start = time.time()
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.time() - start < timeout, "timed out"
        time.sleep(0.05)


@needs_ray
@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds Ray workers in /proc")
def test_a_worker_killed_mid_task_is_retried_and_the_records_are_complete(sequential_run: Path,
                                                                          tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _fresh_copy(sequential_run, run_dir)
    process = _start(run_dir)
    _wait_for(lambda: bool(_task_workers()), process)
    victim = _task_workers()[0]
    os.kill(victim, signal.SIGKILL)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert victim not in _task_workers()
    _same_records(run_dir, sequential_run)  # all six, with the numbers of an uninterrupted run


@needs_ray
@pytest.mark.slow
def test_a_restart_after_ctrl_c_recomputes_nothing_finished(sequential_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _fresh_copy(sequential_run, run_dir)
    sub_runs = run_dir / "cache" / "ablation"
    process = _start(run_dir)
    _wait_for(lambda: any(sub_runs.glob("*/result.json")), process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    finished = {p.parent.name: p.stat().st_mtime_ns for p in sub_runs.glob("*/result.json")}
    assert 1 <= len(finished) < 6
    result = run_cli(*ABLATION, "--out", str(run_dir), timeout=300)
    assert result.returncode == 0, result.stderr
    runs = _same_records(run_dir, sequential_run)
    assert {Path(r["folder"]).name for r in runs if r["reused"]} == set(finished)
    assert {p.parent.name: p.stat().st_mtime_ns for p in sub_runs.glob("*/result.json") if p.parent.name in finished
            } == finished  # not rewritten
