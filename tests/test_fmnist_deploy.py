"""`pipelines/fmnist-deploy.yaml --smoke`: the full-scale deploy recipe runs every stage, records the training numerics
it chose, caches the teacher's logits per augmented view, builds PTQ and QAT INT8 artifacts, and selects an artifact
within the device's budgets; and none of its choices reads the test split.

Both runs read Fashion-MNIST from an ``.npz`` written from the IDX files (the IDX loader verifies each file's MD5, so
a changed test split must come another way): ``deploy`` with the official test split, ``shuffled`` with its test
pixels and its test labels each shuffled on their own (every test image moves and loses its label). Train and
validation are the same in both, so every choice must be too: best epochs, every artifact's bytes (which carry the
QAT fine-tuning's choice of epoch), validation accuracies, parity verdicts and figures, and the selected artifact.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from edgekd.config import Budgets, SelectConfig
from edgekd.pipeline.artifacts import Artifact
from edgekd.runtime.precision import torch_bf16_supported
from edgekd.stages._selection import select_artifact
from tests.conftest import FMNIST_DIR, ROOT, needs_fmnist, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.fmnist, needs_fmnist]


def _idx(stem: str, header: int) -> np.ndarray:
    """The uint8 payload of an IDX file after its ``header`` bytes (16 for images, 8 for labels)."""
    with gzip.open(FMNIST_DIR / f"{stem}.gz") as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=header)


def _write_fmnist(path: Path, *, shuffle_test: bool) -> None:
    """Fashion-MNIST as uint8 NHW arrays in an ``.npz``; with ``shuffle_test``, the test images and the test labels
    are each put in a different random order."""
    x_train = _idx("train-images-idx3-ubyte", 16).reshape(-1, 28, 28)
    x_test = _idx("t10k-images-idx3-ubyte", 16).reshape(-1, 28, 28)
    y_train, y_test = _idx("train-labels-idx1-ubyte", 8), _idx("t10k-labels-idx1-ubyte", 8)
    if shuffle_test:
        x_test = x_test[np.random.default_rng(1).permutation(len(x_test))]
        y_test = y_test[np.random.default_rng(2).permutation(len(y_test))]
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def _run(root: Path, name: str, *, shuffle_test: bool) -> Path:
    data = root / f"{name}.npz"
    _write_fmnist(data, shuffle_test=shuffle_test)
    run_dir = root / name
    result = run_cli("run", str(ROOT / "pipelines" / "fmnist-deploy.yaml"), "--device", "x86-cpu", "--out",
                     str(run_dir), "--smoke", "--set",
                     f"data={{name: npz, params: {{path: {data}, cache_dir: {root / 'npz-cache'}}}, "
                     "val_fraction: 0.1}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="module")
def deploy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(tmp_path_factory.mktemp("fmnist"), "deploy", shuffle_test=False)


@pytest.fixture(scope="module")
def shuffled_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(tmp_path_factory.mktemp("fmnist-shuffled"), "shuffled", shuffle_test=True)


def _manifest(run_dir: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text())
    return manifest


def test_fmnist_deploy_recipe_smoke(deploy_run: Path) -> None:
    manifest = _manifest(deploy_run)
    stages = {s["name"]: s for s in manifest["stages"]}
    native = torch_bf16_supported()
    for stage in ("train-teacher", "distill"):
        numerics = stages[stage]["info"]["numerics"]
        assert numerics["precision"] == ("bf16-autocast" if native else "fp32"), numerics
        assert numerics["channels_last"] is native
        assert numerics["reason"].startswith("amp and channels_last automatic")
    # one smoke epoch of distillation: the teacher ran on view 0, whose logits are cached
    assert [p.name for p in (deploy_run / "cache" / "teacher-logits").rglob("view-*.npy")] == ["view-0.npy"]
    artifacts = {a["name"]: a for a in manifest["artifacts"]}
    assert manifest["selected"] in artifacts and artifacts[manifest["selected"]]["role"] == "student"
    assert {"student-onnx-int8-ort", "student-openvino-int8-nncf", "student-onnx-int8-qat",
            "student-openvino-int8-qat"} <= set(artifacts)
    assert "trained in" in (deploy_run / "report.md").read_text()
    # every choice read validation; every artifact carries both accuracies, measured in its own runtime
    assert manifest["selected_by"] == manifest["selection"]["selected_by"] == "validation"
    assert all({"val_accuracy", "accuracy"} <= set(a["metrics"]) for a in manifest["artifacts"])
    distill = stages["distill"]["info"]
    assert distill["last_epoch"] == 1 and distill["last_val_accuracy"] == distill["history"][-1]["val_accuracy"]
    # parity probes: export.parity_samples (512) images, the smoke run's 256 validation images then 256 train images
    checked = [a for a in manifest["artifacts"] if "parity" in a["info"]]
    assert {a["name"] for a in checked} >= {"student-onnx-fp32", "student-onnx-int8-qat"}
    for art in checked:
        assert art["info"]["parity"]["probe"] == {"validation": 256, "train": 256}, art["name"]
        assert art["info"]["parity"]["samples"] == 512


def _weights(checkpoint: Path) -> str:
    """SHA-256 of a checkpoint's tensors, key by key (the file's own digest also covers the name of the temporary
    folder that ``torch.save`` puts in its archive)."""
    digest = hashlib.sha256()
    for key, tensor in torch.load(checkpoint, weights_only=True)["state_dict"].items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().flatten().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _choices(run_dir: Path) -> dict[str, Any]:
    """Everything the run chose, and the validation figures and check results it chose by."""
    manifest = _manifest(run_dir)
    stages = {s["name"]: s.get("info", {}) for s in manifest["stages"]}
    teacher, distill = stages["train-teacher"], stages["distill"]
    return {
        "teacher": (teacher["best_epoch"], teacher["val_accuracy"]),
        "distill": (distill["best_epoch"], distill["val_accuracy"],
                    [(s["name"], s["best_epoch"], s["val_accuracy"]) for s in distill["steps"]]),
        "artifacts": {a["name"]: (a["status"], _weights(run_dir / a["path"]) if a["format"] == "torch" else a["sha256"],
                                  a["metrics"].get("val_accuracy"), a["info"].get("parity"))
                      for a in manifest["artifacts"]},
        "accuracy_budget": {a["name"]: [f for f in a["metrics"].get("budget_failures", []) if "accuracy" in f]
                            for a in manifest["artifacts"]},
        "candidates": manifest["selection"]["candidates"],
    }


def _selection_timed_as(manifest: dict[str, Any], timed: dict[str, Any]) -> dict[str, Any]:
    """The selection record the select stage makes from ``manifest``'s artifacts when their latencies are those
    measured in the run ``timed`` (latency is the one input of a choice that differs between two runs)."""
    latencies = {a["name"]: a["metrics"] for a in timed["artifacts"]}
    candidates = []
    for entry in manifest["artifacts"]:
        if entry["name"] in manifest["selection"]["candidates"]:
            artifact = Artifact.from_dict(entry)
            for key in ("latency_ms", "samples_ms"):
                artifact.metrics.pop(key, None)
                if key in latencies[entry["name"]]:
                    artifact.metrics[key] = latencies[entry["name"]][key]
            candidates.append(artifact)
    objective = SelectConfig(objective=manifest["selection"]["objective"],
                             max_accuracy_drop=manifest["selection"]["max_accuracy_drop"])
    return select_artifact(candidates, Budgets.model_validate(manifest["budgets"]), objective,
                           device=manifest["device"], enforce=not manifest["smoke"]).record(objective)


def test_shuffling_the_test_split_changes_no_choice(deploy_run: Path, shuffled_run: Path) -> None:
    first, second = _manifest(deploy_run), _manifest(shuffled_run)
    assert _choices(deploy_run) == _choices(shuffled_run)
    # the selection re-made from a run's own figures is the one the run made; from the shuffled run's figures with
    # the first run's latencies, it is the same again (the test split does not enter it)
    assert _selection_timed_as(first, first) == first["selection"]
    assert _selection_timed_as(second, first) == first["selection"]
    assert second["selected_by"] == second["selection"]["selected_by"] == "validation"
    # the test split did change: what is reported on it, the teacher's and the selected artifact's test accuracy
    tests = {a["name"]: (a["metrics"]["accuracy"], b["metrics"]["accuracy"]) for a, b in
             zip(first["artifacts"], second["artifacts"], strict=True)}
    old, new = tests[first["selected"]]
    assert old != new, tests
    assert tests["teacher"][0] != tests["teacher"][1], tests
