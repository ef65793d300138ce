"""Every mistake that used to surface inside a stage is exit 2 from `edgekd validate`, one line naming file and key
(Stage.check runs before any stage; the runner calls the same checks before any work)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edgekd.cli import main
from tests.conftest import ROOT, run_cli

QUICKSTART = ROOT / "pipelines" / "quickstart.yaml"


def write(tmp_path: Path, name: str, data: dict) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def quickstart(**sections: object) -> dict:
    recipe = yaml.safe_load(QUICKSTART.read_text())
    recipe.update(sections)
    return recipe


@pytest.fixture
def validate(capsys: pytest.CaptureFixture[str]):
    """`edgekd validate` in this process (the command line's own entry point), returning its code and stderr."""

    def call(recipe: Path | str, device: Path | str = "x86-cpu", *overrides: str) -> tuple[int, str]:
        args = ["validate", str(recipe), "--device", str(device)]
        for item in overrides:
            args += ["--set", item]
        code = main(args)
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        return code, "\n".join(lines)

    return call


@pytest.mark.parametrize("override, key, message", [
    ("distill.losses.0.params.temperature=-1", "distill.losses.0.params",
     "loss 'kd': hparam 'temperature': Input should be greater than 0 (got -1)"),
    ("distill.losses.0.params.tempreature=2", "distill.losses.0.params",
     "loss 'kd': unknown hparam 'tempreature'; did you mean 'temperature'?"),
    ("distill.losses.0.params.temperature=hot", "distill.losses.0.params", "Input should be a valid number"),
    ("student.model.kwargs.widht=2", "student.model", "got an unexpected keyword argument 'widht'"),
    ("teacher.model.kwargs.width=-1", "teacher.model", "model 'resnet20'"),
    ("seed=-1", "seed", "greater than or equal to 0"),
    (f"seed={2**32}", "seed", "less than or equal to 4294967295"),
])
def test_recipe_mistakes_are_exit_2_from_validate(validate, override: str, key: str, message: str) -> None:
    code, stderr = validate(QUICKSTART, "x86-cpu", override)
    assert code == 2, stderr
    assert stderr.count("\n") == 0, stderr  # one line
    assert stderr.startswith(f"error: {QUICKSTART}: {key}: "), stderr
    assert message in stderr


def test_teacher_cache_with_feature_losses(validate, tmp_path: Path) -> None:
    recipe = quickstart()
    recipe["distill"]["losses"] = [{"name": "at", "weight": 10.0}]
    recipe["distill"]["train"]["teacher_cache"] = True
    code, stderr = validate(write(tmp_path, "r.yaml", recipe))
    assert code == 2 and "distill.train.teacher_cache: true needs logit-only losses; at read the live" in stderr


def test_qat_with_a_feature_loss(validate, tmp_path: Path) -> None:
    recipe = quickstart(quantize={"qat": {"losses": [{"name": "at"}]}})
    code, stderr = validate(write(tmp_path, "r.yaml", recipe))
    assert code == 2 and "quantize.qat.losses.0.name: 'at' is a feature loss; QAT distils logits only" in stderr


def test_qat_from_a_teacher_that_the_recipe_lacks(validate, tmp_path: Path) -> None:
    recipe = quickstart(quantize={"qat": {"teacher": "teacher"}})
    del recipe["teacher"]
    recipe["distill"]["losses"] = []
    code, stderr = validate(write(tmp_path, "r.yaml", recipe))
    assert code == 2 and "quantize.qat.teacher: 'teacher' needs a teacher section in the recipe" in stderr


def test_accuracy_control_without_a_floor_names_the_device_file(validate, tmp_path: Path) -> None:
    recipe = write(tmp_path, "r.yaml", quickstart(quantize={"accuracy_control": {"max_drop": None}}))
    device = write(tmp_path, "d.yaml", {"name": "d", "runtimes": [{"runtime": "openvino", "precisions": ["int8"]}]})
    code, stderr = validate(recipe, device)
    assert code == 2 and stderr.startswith(f"error: {device}: budgets.min_accuracy: quantize.accuracy_control"), stderr


def test_a_device_the_bench_stage_cannot_measure(validate, tmp_path: Path) -> None:
    device = write(tmp_path, "d.yaml", {"name": "phone", "access": {"kind": "adb", "serial": "X",
                                                                    "perf_binary": "/data/local/tmp/perf"},
                                        "runtimes": [{"runtime": "openvino"}]})
    code, stderr = validate(QUICKSTART, device)
    assert code == 2 and stderr.strip() == (f"error: {device}: runtimes: an adb device measures onnxruntime artifacts "
                                            "through its native benchmark binary; openvino cannot be benchmarked "
                                            "there"), stderr
    ssh = write(tmp_path, "s.yaml", {"name": "pi", "access": {"kind": "ssh", "host": "127.0.0.1",
                                                              "identity_file": str(tmp_path / "missing-key")},
                                     "runtimes": [{"runtime": "onnxruntime"}]})
    code, stderr = validate(QUICKSTART, ssh)
    assert code == 2 and stderr.startswith(f"error: {ssh}: access.identity_file: {tmp_path / 'missing-key'}"), stderr


def test_run_checks_before_any_stage(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_cli("run", str(QUICKSTART), "--device", "x86-cpu", "--out", str(run_dir),
                     "--set", "distill.losses.0.params.temperature=0")
    assert result.returncode == 2 and "distill.losses.0.params" in result.stderr
    assert not (run_dir / "train-teacher").exists()  # found before the teacher trained
