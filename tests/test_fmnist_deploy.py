"""`pipelines/fmnist-deploy.yaml --smoke`: the full-scale deploy recipe runs every stage, records the training numerics
it chose, caches the teacher's logits per augmented view, builds PTQ and QAT INT8 artifacts, and selects an artifact
within the device's budgets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekd.runtime.precision import torch_bf16_supported
from tests.conftest import ROOT, needs_fmnist, run_cli


@pytest.mark.slow
@pytest.mark.fmnist
@needs_fmnist
def test_fmnist_deploy_recipe_smoke(tmp_path: Path) -> None:
    run_dir = tmp_path / "deploy"
    result = run_cli("run", str(ROOT / "pipelines" / "fmnist-deploy.yaml"), "--device", "x86-cpu", "--out",
                     str(run_dir), "--smoke")
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    stages = {s["name"]: s for s in manifest["stages"]}
    native = torch_bf16_supported()
    for stage in ("train-teacher", "distill"):
        numerics = stages[stage]["info"]["numerics"]
        assert numerics["precision"] == ("bf16-autocast" if native else "fp32"), numerics
        assert numerics["channels_last"] is native
        assert numerics["reason"].startswith("amp and channels_last automatic")
    # one smoke epoch of distillation: the teacher ran on view 0, whose logits are cached
    assert [p.name for p in (run_dir / "cache" / "teacher-logits").rglob("view-*.npy")] == ["view-0.npy"]
    artifacts = {a["name"]: a for a in manifest["artifacts"]}
    assert manifest["selected"] in artifacts and artifacts[manifest["selected"]]["role"] == "student"
    assert {"student-onnx-int8-ort", "student-openvino-int8-nncf", "student-onnx-int8-qat",
            "student-openvino-int8-qat"} <= set(artifacts)
    assert "trained in" in (run_dir / "report.md").read_text()
    # every choice read validation; every artifact carries both accuracies, measured in its own runtime
    assert manifest["selected_by"] == manifest["selection"]["selected_by"] == "validation"
    assert all({"val_accuracy", "accuracy"} <= set(a["metrics"]) for a in manifest["artifacts"])
    distill = stages["distill"]["info"]
    assert distill["last_epoch"] == 1 and distill["last_val_accuracy"] == distill["history"][-1]["val_accuracy"]
