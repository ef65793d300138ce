"""Every choice of a run reads the validation split only: the same run on data whose test images and test labels are
each shuffled chooses the same teacher assistant, best epochs, LayerMerge importances, accuracy-controlled INT8 model,
parity verdicts and deployed artifact, while the test accuracies change.

The recipe is quickstart's on sklearn digits written to an ``.npz`` (so the test split can be shuffled in a copy),
with an automatic teacher assistant, LayerMerge, PTQ with NNCF accuracy control and the ``size`` objective: its
choice (the smallest artifact within the accuracy drop of the most accurate one on validation) does not depend on
latency noise, so two runs can be compared exactly. The prune stage's plans do depend on latencies timed afresh in
each run; the input it chooses by on validation, the importance of every table entry, is compared.
``tests/test_fmnist_deploy.py`` makes the same comparison on the fmnist-deploy recipe, whose stages hold no assistant
choice, LayerMerge or accuracy control.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import ROOT, run_cli

OVERRIDES = [
    "--set", "teacher.model.name=plain8", "--set", "student.model.name=plain2",
    "--set", "distill.assistants=[{name: plain6}]", "--set", "distill.auto_assistant={max_candidates: 2}",
    "--set", "distill.chain=auto",
    "--set", "prune={budgets: [0.7], deploy: 0.7, baselines: [], importance: {mode: proxy, steps: 2}}",
    "--set", "quantize={engines: [ort, nncf], accuracy_control: {max_drop: 0.02}}",
    "--set", "select={objective: size, max_accuracy_drop: 0.05}",
    "--set", "bench.runs=5", "--set", "bench.warmup=0",
]


def _write_digits(path: Path, *, shuffle_test: bool) -> np.ndarray:
    """sklearn digits as uint8 images in an ``.npz`` (a fixed 1437 / 360 train / test split); with ``shuffle_test``,
    the test images and the test labels are each put in a different random order. Returns y_test."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.round(digits.images * (255 / 16)).astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1437], order[1437:]
    x_test, y_test = x[test], digits.target[test]
    if shuffle_test:
        x_test = x_test[np.random.default_rng(2).permutation(len(x_test))]
        y_test = np.random.default_rng(1).permutation(y_test)
    np.savez(path, x_train=x[train], y_train=digits.target[train], x_test=x_test, y_test=y_test)
    return y_test


def _run(tmp_path: Path, name: str, shuffle: bool) -> tuple[dict[str, Any], np.ndarray]:
    data = tmp_path / f"{name}.npz"
    y_test = _write_digits(data, shuffle_test=shuffle)
    out = tmp_path / name
    result = run_cli("run", str(ROOT / "pipelines" / "quickstart.yaml"), "--device", "x86-cpu", "--smoke",
                     "--out", str(out), *OVERRIDES, "--set",
                     f"data={{name: npz, params: {{path: {data}, cache_dir: {tmp_path / 'npz-cache'}}}, "
                     "val_fraction: 0.2}")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "manifest.json").read_text()), y_test


def _stage(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    info: dict[str, Any] = next(s for s in manifest["stages"] if s["name"] == name)["info"]
    return info


def _choices(manifest: dict[str, Any]) -> dict[str, Any]:
    """Everything a run chose, and the validation figures it chose by."""
    artifacts = {a["name"]: a for a in manifest["artifacts"]}
    assistant = _stage(manifest, "select-assistant")
    distill = _stage(manifest, "distill")
    prune = _stage(manifest, "prune")
    selection = manifest["selection"]
    return {
        "assistant": assistant["selected"],
        "assistant_scores": [(c["name"], c["val_accuracy"], c["score"]) for c in assistant["candidates"]],
        "teacher_best_epoch": _stage(manifest, "train-teacher")["best_epoch"],
        "distill_steps": [(s["name"], s["best_epoch"], s["val_accuracy"]) for s in distill["steps"]],
        "prune_importance": {key: entry["importance"] for key, entry in prune["table"].items()},
        "prune_base_val_accuracy": prune["base_val_accuracy"],
        "accuracy_controlled": artifacts["student-openvino-int8-nncf_ac"]["sha256"],
        "val_accuracy": {name: a["metrics"].get("val_accuracy") for name, a in artifacts.items()},
        "parity": {name: a["info"].get("parity") for name, a in artifacts.items()},
        "selected": manifest["selected"],
        "selected_by": (manifest["selected_by"], selection["selected_by"]),
        "contenders": selection["contenders"],
        "accuracy_budget": {name: [f for f in a["metrics"].get("budget_failures", []) if "accuracy" in f]
                            for name, a in artifacts.items()},
    }


@pytest.mark.slow
def test_shuffling_the_test_split_changes_no_choice(tmp_path: Path) -> None:
    first, y_test = _run(tmp_path, "labels", shuffle=False)
    second, y_shuffled = _run(tmp_path, "shuffled", shuffle=True)
    assert np.mean(y_test != y_shuffled) > 0.5  # most test labels moved
    assert _choices(first) == _choices(second)
    assert _choices(first)["selected_by"] == ("validation", "validation")
    assert first["selected"] is not None and None not in _choices(first)["val_accuracy"].values()
    # the test accuracies do see the shuffle (a model that predicts one class scores the same on shuffled labels,
    # which keep every class's count; the smoke-trained ones that do not, score differently)
    tests = {a["name"]: (a["metrics"]["accuracy"], b["metrics"]["accuracy"]) for a, b in
             zip(first["artifacts"], second["artifacts"], strict=True)}
    old, new = tests[first["selected"]]
    assert old != new, tests
    assert sum(a != b for a, b in tests.values()) > len(tests) / 2, tests
    for manifest in (first, second):
        assert _stage(manifest, "distill")["test_accuracy"] == next(
            a for a in manifest["artifacts"] if a["name"] == "student-unpruned")["metrics"]["accuracy"]
