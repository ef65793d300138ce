"""LiteRT through a whole run, as a user runs it: the quickstart recipe (with an INT8 section) on the
``x86-cpu-litert`` profile builds, parity-checks, evaluates and benchmarks the LiteRT fp32, fp16 and int8 artifacts
beside ONNX Runtime's, and LiteRT's fp32 predictions agree with ONNX Runtime's (a peer runtime) on the test set."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run_cli

MISSING = [m for m in ("ai_edge_litert", "litert_torch", "ai_edge_quantizer") if importlib.util.find_spec(m) is None]
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    bool(MISSING), reason=f"{', '.join(MISSING)} not installed (pip install 'edgekd[litert]')")]

DEVICE = str(ROOT / "devices" / "x86-cpu-litert.yaml")
LITERT = ("student-litert-fp32", "student-litert-fp16", "student-litert-int8-aiq")


@pytest.fixture(scope="module")
def litert_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A smoke run of the quickstart recipe plus an ONNX Runtime/LiteRT INT8 section."""
    folder = tmp_path_factory.mktemp("litert")
    recipe = yaml.safe_load((ROOT / "pipelines" / "quickstart.yaml").read_text())
    recipe["quantize"] = {"engines": ["ort"], "calibration_samples": 64}
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    result = run_cli("run", str(folder / "recipe.yaml"), "--device", DEVICE, "--out", str(folder / "run"), "--smoke")
    return folder / "run", result


def test_the_litert_artifacts_are_built_evaluated_and_benchmarked(litert_run) -> None:
    run_dir, result = litert_run
    assert result.returncode == 0, result.stderr[-2000:]
    arts = {a["name"]: a for a in json.loads((run_dir / "manifest.json").read_text())["artifacts"]}
    for name in LITERT:
        art = arts[name]
        assert art["status"] == "ok" and art["runtime"] == "litert" and art["format"] == "litert", art
        assert Path(run_dir / art["path"]).suffix == ".tflite"
        assert 0.0 <= art["metrics"]["accuracy"] <= 1.0 and art["metrics"]["latency_ms"]["p50"] > 0, name
    assert arts["student-litert-fp32"]["precision"] == "fp32" and arts["student-litert-fp16"]["precision"] == "fp16"
    assert arts["student-litert-int8-aiq"]["precision"] == "int8"
    assert arts["student-litert-fp32"]["info"]["parity"]["passed"] is True
    assert arts["student-litert-fp16"]["info"]["parity"]["passed"] is True
    computed = arts["student-litert-int8-aiq"]["metrics"]["compute"]["inference_precision"]
    assert computed == "int8"
    # fp16 weights are half the fp32 model's (the rest of the flatbuffer is small); int8 weights a quarter
    fp32, fp16, int8 = (arts[n]["bytes"] for n in LITERT)
    assert 0.4 < fp16 / fp32 < 0.6 and 0.2 < int8 / fp32 < 0.4, (fp32, fp16, int8)


def test_litert_fp32_accuracy_agrees_with_onnx_runtime(litert_run) -> None:
    """Both artifacts come from one torch model and each passed its parity check, so on the whole test set their
    accuracies differ by at most the share of images where their top-1 predictions differ: recomputed here from
    both runtimes' logits on the full test set (a smoke run evaluates a subset), and that share is within the
    export's ``min_top1_agreement``."""
    from edgekd.config.recipe import ExportConfig
    from edgekd.data import load_dataset
    from edgekd.runtime import open_runner, predict

    run_dir, result = litert_run
    assert result.returncode == 0, result.stderr[-2000:]
    arts = {a["name"]: a for a in json.loads((run_dir / "manifest.json").read_text())["artifacts"]}
    data = load_dataset("digits", val_fraction=0.1, seed=0)
    x, y = data.test.x.numpy(), data.test.y.numpy()
    with open_runner("litert", run_dir / arts["student-litert-fp32"]["path"], threads=2) as lite, \
            open_runner("onnxruntime", run_dir / arts["student-onnx-fp32"]["path"], threads=2) as ort:
        lite_top1 = predict(lite, x, 256).argmax(1)
        ort_top1 = predict(ort, x, 256).argmax(1)
    agreement = float((lite_top1 == ort_top1).mean())
    lite_acc, ort_acc = float((lite_top1 == y).mean()), float((ort_top1 == y).mean())
    assert agreement >= ExportConfig().min_top1_agreement, agreement
    assert abs(lite_acc - ort_acc) <= 1 - agreement + 1e-12


USER_MODEL = '''
import torch
from torch import nn


class Guarded(nn.Module):
    """A small CNN whose logits are scaled by the log-determinant of a learned 4x4 matrix: ONNX has Det, LiteRT has
    no lowering of aten._linalg_slogdet."""

    def __init__(self, num_classes, in_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.head = nn.Linear(8, num_classes)
        self.m = nn.Parameter(torch.eye(4))
        self.register_buffer("eye", torch.eye(4))

    def forward(self, x):
        scale = 1 + 0.01 * torch.logdet(self.m @ self.m.T + self.eye)
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3))) * scale


def factory(num_classes, in_channels=1):
    return Guarded(num_classes, in_channels)
'''


def test_a_model_litert_cannot_convert_fails_its_litert_artifacts_with_exit_2(tmp_path: Path) -> None:
    """The LiteRT artifacts fail with one line naming the operation; ONNX Runtime's artifacts go through every
    stage, and the run exits 2 (bad input) naming the failed artifacts. (A model with a data-dependent branch, which
    torch.export refuses, cannot be used here: edgekd counts a model's MACs on meta tensors first.)"""
    import os

    (tmp_path / "guarded_model.py").write_text(USER_MODEL)
    recipe = yaml.safe_load((ROOT / "pipelines" / "quickstart.yaml").read_text())
    recipe["student"] = {"model": {"name": "guarded_model:factory"}}
    recipe["quantize"] = {"engines": ["ort"], "calibration_samples": 64}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    result = run_cli("run", str(tmp_path / "recipe.yaml"), "--device", DEVICE, "--out", str(tmp_path / "run"),
                     "--smoke", env={"PYTHONPATH": path})
    assert result.returncode == 2, result.stderr[-2000:]
    arts = {a["name"]: a for a in json.loads((tmp_path / "run" / "manifest.json").read_text())["artifacts"]}
    for name in LITERT:
        assert arts[name]["status"] == "failed" and "\n" not in arts[name]["reason"], name
        assert "LiteRT has no lowering for aten._linalg_slogdet" in arts[name]["reason"], arts[name]["reason"]
    for name in ("student-onnx-fp32", "student-onnx-int8-ort"):
        assert arts[name]["status"] == "ok" and "latency_ms" in arts[name]["metrics"], name
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and all(name in errors[0] for name in LITERT), errors
    assert "Traceback" not in result.stderr
