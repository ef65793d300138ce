"""One failing artifact does not lose the run, and the exit codes mean what the README says (1, 2, 130), through the
command line as a user runs it."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli, start_cli

QUICKSTART = "pipelines/quickstart.yaml"
FAST = ["--set", "teacher.train.epochs=1", "--set", "distill.train.epochs=1", "--set", "bench.runs=10",
        "--set", "bench.warmup=2"]


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


@pytest.fixture(scope="module")
def failed_fp16(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A smoke run whose fp16 artifact is made to fail its parity check (a tolerance no fp16 rounding can meet)."""
    run_dir = tmp_path_factory.mktemp("failed") / "run"
    result = run_cli("run", QUICKSTART, "--device", "x86-cpu", "--out", str(run_dir), "--smoke",
                     "--set", "export.fp16_parity_atol=1e-12", "--set", "export.fp16_parity_rtol=0")
    return run_dir, result


@pytest.mark.slow
def test_one_failed_artifact_exits_1_naming_it(failed_fp16) -> None:
    run_dir, result = failed_fp16
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "1 artifact(s) failed: student-openvino-fp16 (parity check failed" in errors[0]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_the_failed_artifact_keeps_its_figures_and_the_others_go_through_every_stage(failed_fp16) -> None:
    run_dir, _ = failed_fp16
    m = manifest(run_dir)
    arts = {a["name"]: a for a in m["artifacts"]}
    bad = arts.pop("student-openvino-fp16")
    assert bad["status"] == "failed" and bad["reason"].startswith("parity check failed against torch")
    assert bad["info"]["parity"]["passed"] is False and bad["info"]["parity"]["max_abs_diff"] > 1e-12
    assert "accuracy" not in bad["metrics"] and "latency_ms" not in bad["metrics"]  # not measured, never selected
    assert m["selected"] != "student-openvino-fp16"
    for art in arts.values():
        assert art["status"] == "ok"
        assert "accuracy" in art["metrics"] and "latency_ms" in art["metrics"], art["name"]
    report = (run_dir / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| student-openvino-fp16 |"))
    assert "**failed** (see Failed artifacts)" in row
    assert "- `student-openvino-fp16`: parity check failed against torch on" in report
    assert "| student | student-openvino-fp16 ✗ failed |" in report
    assert [s["status"] for s in m["stages"] if s["name"] in ("evaluate", "bench", "report")] == ["done"] * 3


@pytest.mark.slow
def test_the_failed_artifact_is_shown_in_the_summary(failed_fp16) -> None:
    _, result = failed_fp16
    assert "student-openvino-fp16 ✗ failed" in result.stdout
    assert "failed: student-openvino-fp16: parity check failed" in result.stdout


@pytest.mark.slow
def test_a_budget_no_artifact_meets_exits_1(tmp_path: Path) -> None:
    device = tmp_path / "tiny.yaml"
    device.write_text("name: tiny\nthreads: 2\nruntimes: [{runtime: onnxruntime, precisions: [fp32]}]\n"
                      "budgets: {max_latency_ms: 0.000001}\n")
    result = run_cli("run", QUICKSTART, "--device", str(device), "--out", str(tmp_path / "run"), *FAST)
    assert result.returncode == 1, result.stderr
    assert "error: no artifact meets the budgets of device tiny" in result.stderr
    assert manifest(tmp_path / "run")["selected"] is None


@pytest.mark.slow
def test_ctrl_c_exits_130_and_records_the_interruption(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = ["run", QUICKSTART, "--device", "x86-cpu", "--out", str(run_dir), "--set", "teacher.train.epochs=30"]
    proc = start_cli(*args)
    checkpoint = run_dir / "train-teacher" / "teacher" / "last.pt"
    deadline = time.time() + 300
    while time.time() < deadline and not checkpoint.exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert f"interrupted: run the same command with --out {run_dir} to resume" in stderr
    stage = next(s for s in manifest(run_dir)["stages"] if s["name"] == "train-teacher")
    assert stage["status"] == "failed" and stage["error"] == "interrupted"


def test_bad_input_stays_exit_2(tmp_path: Path) -> None:
    result = run_cli("run", QUICKSTART, "--device", "x86-cpu", "--out", str(tmp_path / "r"),
                     "--set", "export.bf16_parity_atol=-1")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error:") and "bf16_parity_atol" in result.stderr
