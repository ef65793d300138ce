"""The quantize stage end to end: every INT8 artifact the device asks for is built, evaluated and timed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, needs_fmnist, run_cli

EXPECTED = {
    "student-onnx-fp32", "student-openvino-fp32", "student-openvino-fp16",  # export
    "student-onnx-int8-ort", "student-onnx-int8-nncf", "student-openvino-int8-nncf",  # PTQ
    "student-openvino-int8-nncf_ac", "student-openvino-int8-qat", "student-onnx-int8-qat",  # AC, QAT+KD
}


def check_int8_run(run_dir: Path) -> dict:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    artifacts = {a["name"]: a for a in manifest["artifacts"]}
    assert EXPECTED <= set(artifacts), sorted(EXPECTED - set(artifacts))
    fp32 = artifacts["student-onnx-fp32"]
    for name in EXPECTED:
        art = artifacts[name]
        assert 0.0 <= art["metrics"]["accuracy"] <= 1.0
        assert art["metrics"]["latency_ms"]["p50"] > 0
        if "int8" in name:
            assert art["precision"] == "int8"
            assert 0.0 <= art["info"]["parity"]["top1_agreement"] <= 1.0
    # INT8 artifacts store INT8 weights, QAT's too (its weight quantizers are folded): well under the fp32 file
    assert artifacts["student-onnx-int8-ort"]["bytes"] < 0.5 * fp32["bytes"]
    assert artifacts["student-onnx-int8-qat"]["bytes"] < 0.5 * fp32["bytes"]
    assert artifacts["student-openvino-int8-nncf"]["bytes"] < artifacts["student-openvino-fp32"]["bytes"]
    report = (run_dir / "report.md").read_text()
    assert "student-openvino-int8-qat" in report
    return manifest


@pytest.mark.slow
def test_quantize_stage_on_digits(tmp_path: Path) -> None:
    """Every INT8 path on the embedded data set, so it runs everywhere."""
    run_dir = tmp_path / "q"
    result = run_cli("run", str(ROOT / "pipelines" / "fmnist-quantize.yaml"), "--device", "x86-cpu", "--out",
                     str(run_dir), "--smoke", "--set", "data={name: digits}", "--set", "teacher.model.name=resnet8")
    assert result.returncode == 0, result.stderr[-3000:]
    check_int8_run(run_dir)


@pytest.mark.slow
@pytest.mark.fmnist
@needs_fmnist
def test_fmnist_quantize_recipe_smoke(tmp_path: Path) -> None:
    run_dir = tmp_path / "fq"
    result = run_cli("run", str(ROOT / "pipelines" / "fmnist-quantize.yaml"), "--device", "x86-cpu", "--out",
                     str(run_dir), "--smoke")
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = check_int8_run(run_dir)
    assert manifest["smoke"] is True
