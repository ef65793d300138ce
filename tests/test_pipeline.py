"""End to end through the CLI: manifest contract, caching, invalidation, and resume after kill -9."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgekd.pipeline.manifest import Manifest
from edgekd.runtime.precision import bf16_unsupported, openvino_hint
from tests.conftest import ROOT, run_cli, sha256sum_check

QUICKSTART = str(ROOT / "pipelines" / "quickstart.yaml")
STATUSES = {"done", "cached", "failed", "skipped"}


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def statuses(run_dir: Path) -> dict[str, str]:
    return {s["name"]: s["status"] for s in manifest(run_dir)["stages"]}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "quickstart"
    result = run_cli("run", QUICKSTART, "--device", "x86-cpu", "--out", str(run_dir), "--smoke")
    assert result.returncode == 0, result.stderr  # a smoke run reports budgets without enforcing them
    return run_dir


@pytest.mark.slow
def test_manifest_follows_design(smoke_run: Path) -> None:
    m = manifest(smoke_run)
    assert Manifest.model_validate(m).model_dump(mode="json", exclude_unset=True) == m  # valid as written
    for key in ("recipe", "device", "edgekd_version", "stages", "artifacts", "selected"):
        assert key in m
    assert m["recipe"] == "quickstart" and m["device"] == "x86-cpu" and m["smoke"] is True
    assert {s["status"] for s in m["stages"]} <= STATUSES
    assert all(isinstance(s["seconds"], float) for s in m["stages"])
    names = {a["name"]: a for a in m["artifacts"]}
    assert {"teacher", "student", "student-onnx-fp32", "student-openvino-fp32", "student-openvino-fp16"} <= set(names)
    fp16, fp32 = names["student-openvino-fp16"], names["student-openvino-fp32"]
    assert (smoke_run / fp16["path"]).with_suffix(".bin").stat().st_size < 0.6 * (
        smoke_run / fp32["path"]).with_suffix(".bin").stat().st_size  # FP16 weights: about half the bytes
    for art in m["artifacts"]:
        path = smoke_run / art["path"]
        assert not Path(art["path"]).is_absolute()
        if art["format"] == "openvino":  # IR = model.xml + model.bin, both counted and both listed
            assert path.suffix == ".xml"
            assert art["bytes"] == path.stat().st_size + path.with_suffix(".bin").stat().st_size
            assert [f["path"] for f in art["files"]] == [art["path"], str(Path(art["path"]).with_suffix(".bin"))]
        else:
            assert art["bytes"] == path.stat().st_size
            assert [f["path"] for f in art["files"]] == [art["path"]]
        assert art["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()  # of the main file, as sha256sum says
        assert art["format"] in {"torch", "onnx", "openvino", "tensorrt"}
        assert art["precision"] in {"fp32", "bf16", "fp16", "int8"}
        assert art["status"] == "ok" and art["reason"] == ""
        # the precision that ran is recorded, and it is the artifact's own, whatever the CPU's default
        ran = art["metrics"]["compute"]["inference_precision"]
        assert ran == (openvino_hint(art["precision"]) if art["runtime"] == "openvino" else "f32"), art["name"]
        assert art["input"] == {"shape": [-1, 1, 8, 8], "dtype": "float32", "range": [0.0, 1.0], "layout": "NCHW"}
        assert art["smoke"] is True
        assert 0.0 <= art["metrics"]["accuracy"] <= 1.0 and 0.0 <= art["metrics"]["val_accuracy"] <= 1.0
        assert art["metrics"]["val_samples"] == 144  # a tenth of each class of digits' 1,437 train images
        latency = art["metrics"]["latency_ms"]
        assert set(latency) >= {"p50", "p90", "p99", "mean"}
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
    not_built = next(s for s in m["stages"] if s["name"] == "export")["info"]["not_built"]
    if (why := bf16_unsupported("openvino")) is None:  # a BF16 CPU: built, run and recorded in bf16
        assert names["student-openvino-bf16"]["metrics"]["compute"]["layer_precisions"].get("bf16", 0) > 0
    else:  # any other CPU: not built, and the run says why
        assert "student-openvino-bf16" not in names and not_built["openvino/bf16"] == why
    onnx = names["student-onnx-fp32"]
    assert onnx["format"] == "onnx" and onnx["runtime"] == "onnxruntime"
    assert onnx["info"]["parity"]["top1_agreement"] >= 0.999
    # the parity probe holds no test image: digits' 144 validation images, topped up to export.parity_samples (512)
    # with 512 - 144 = 368 train images
    for art in m["artifacts"]:
        if art["format"] != "torch":
            assert art["info"]["parity"]["probe"] == {"validation": 144, "train": 368}, art["name"]
    # the ONNX artifact and the torch model it came from agree on test accuracy (parity ≥ 99.9 %)
    assert abs(onnx["metrics"]["accuracy"] - names["student"]["metrics"]["accuracy"]) <= 0.002
    checked = sha256sum_check(smoke_run, m, smoke_run.parent / "SHA256SUMS")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert (smoke_run / "report.md").is_file() and (smoke_run / "report.html").is_file()
    assert "student-onnx-fp32" in (smoke_run / "report.md").read_text()


@pytest.mark.slow
def test_second_run_is_fully_cached(smoke_run: Path) -> None:
    start = time.perf_counter()
    result = run_cli("run", QUICKSTART, "--device", "x86-cpu", "--out", str(smoke_run), "--smoke")
    assert result.returncode in (0, 1), result.stderr
    assert set(statuses(smoke_run).values()) - {"skipped"} == {"cached"}
    assert time.perf_counter() - start < 60


@pytest.mark.slow
def test_changing_bench_reruns_only_what_follows(smoke_run: Path) -> None:
    result = run_cli("run", QUICKSTART, "--device", "x86-cpu", "--out", str(smoke_run), "--smoke",
                     "--set", "bench.warmup=2")
    assert result.returncode in (0, 1), result.stderr
    s = statuses(smoke_run)
    assert [s[n] for n in ("train-teacher", "distill", "export", "evaluate")] == ["cached"] * 4
    assert s["bench"] == "done"
    bench = next(x for x in manifest(smoke_run)["stages"] if x["name"] == "bench")
    assert bench["reason"] == "stage config changed"


@pytest.mark.slow
def test_killed_run_resumes_mid_stage(tmp_path: Path) -> None:
    """kill -9 during distillation; the rerun keeps the teacher cached and resumes the student's epochs."""
    run_dir = tmp_path / "run"
    args = ["run", QUICKSTART, "--device", "x86-cpu", "--out", str(run_dir), "--set", "teacher.model.name=resnet8",
            "--set", "teacher.train.epochs=4", "--set", "distill.train.epochs=30", "--set", "bench.runs=5"]
    proc = subprocess.Popen([sys.executable, "-m", "edgekd.cli", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoint = run_dir / "distill" / "student" / "last.pt"
    deadline = time.time() + 300
    while time.time() < deadline and not checkpoint.exists():
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists(), "the run never reached the distill stage"
    interrupted = manifest(run_dir)  # valid JSON even after kill -9
    assert interrupted["current_stage"] == "distill"
    teacher_sha = (run_dir / "train-teacher" / "stage.json").read_text()

    result = run_cli(*args)
    assert result.returncode in (0, 1), result.stderr
    s = statuses(run_dir)
    assert s["train-teacher"] == "cached" and s["distill"] == "done"
    assert "resuming after epoch" in result.stderr
    # not a terminal: one line per epoch, from the first unfinished one
    done = int(re.search(r"student: resuming after epoch (\d+)", result.stderr).group(1))
    assert re.findall(r"student: epoch (\d+)/30 ", result.stderr) == [str(e) for e in range(done + 1, 31)]
    distill = next(x for x in manifest(run_dir)["stages"] if x["name"] == "distill")
    assert "resuming the interrupted attempt" in distill["reason"]
    assert [h["epoch"] for h in distill["info"]["history"]] == list(range(1, 31))
    assert (run_dir / "train-teacher" / "stage.json").read_text() == teacher_sha
    check_onnx_runs_without_edgekd(run_dir)


def check_onnx_runs_without_edgekd(run_dir: Path) -> None:
    """The artifact is self-contained: raw [0, 1] pixels in, logits out, in plain ONNX Runtime, on scikit-learn's own
    copy of the data (the normalisation lives in the graph)."""
    import numpy as np
    import onnxruntime as ort
    from sklearn.datasets import load_digits

    art = next(a for a in manifest(run_dir)["artifacts"] if a["name"] == "student-onnx-fp32")
    assert art["input"]["range"] == [0.0, 1.0]
    session = ort.InferenceSession(str(run_dir / art["path"]), providers=["CPUExecutionProvider"])
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    logits = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert logits.shape == (len(x), 10)
    accuracy = float((logits.argmax(1) == digits.target).mean())
    assert accuracy > 0.8, accuracy  # a trained student on all 1797 images (train and test together)
    assert abs(accuracy - art["metrics"]["accuracy"]) < 0.05
