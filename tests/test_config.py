"""Recipes and device profiles: valid files load, bad ones give exit 2 with one readable line and no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edgekd.config import load_device, load_recipe
from edgekd.config.loader import apply_overrides
from edgekd.errors import UserError
from tests.conftest import ROOT, run_cli

QUICKSTART = ROOT / "pipelines" / "quickstart.yaml"


def write_recipe(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def quickstart_with(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(QUICKSTART.read_text())
    edit(data)
    return write_recipe(tmp_path, yaml.safe_dump(data))


@pytest.mark.parametrize("recipe", sorted((ROOT / "pipelines").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_is_valid(recipe: Path) -> None:
    assert load_recipe(recipe).name


@pytest.mark.parametrize("device", sorted((ROOT / "devices").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_device_is_valid(device: Path) -> None:
    assert load_device(str(device)).name == device.stem


def test_overrides_set_nested_keys_and_list_items() -> None:
    data = {"a": {"b": 1}, "l": [{"w": 1}, {"w": 2}]}
    result = apply_overrides(data, ["a.b=3", "l.1.w=0.5", "new.key=[1, 2]"], "x")
    assert result == {"a": {"b": 3}, "l": [{"w": 1}, {"w": 0.5}], "new": {"key": [1, 2]}}
    assert data["a"]["b"] == 1  # the input is not modified


def test_override_reaches_the_schema() -> None:
    recipe = load_recipe(QUICKSTART, ["distill.train.epochs=3", "distill.losses.0.params.temperature=2"])
    assert recipe.distill.train.epochs == 3
    assert recipe.distill.losses[0].params == {"temperature": 2}


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d["teacher"]["model"].update(name="resnet21"),
         "teacher.model.name: unknown model 'resnet21'; did you mean"),
        (lambda d: d["teacher"]["train"].update(epocs=3), "teacher.train.epocs: unknown key; did you mean 'epochs'?"),
        (lambda d: d["teacher"]["train"].update(epochs="many"),
         "teacher.train.epochs: Input should be a valid integer"),
        (lambda d: d["distill"]["losses"][0].update(name="kdd"),
         "distill.losses.0: unknown loss 'kdd'; did you mean 'kd'"),
        (lambda d: d["data"].update(name="cifar"), "data: unknown data set 'cifar'"),
        (lambda d: d.pop("distill"), "student needs a distill section"),
    ],
    ids=["unknown-model", "unknown-key", "wrong-type", "unknown-loss", "unknown-dataset", "missing-section"],
)
def test_bad_recipe_names_file_key_and_fix(tmp_path: Path, edit, expected: str) -> None:
    path = quickstart_with(tmp_path, edit)
    with pytest.raises(UserError) as info:
        load_recipe(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_bad_yaml_gives_line_and_column(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, "name: x\ndata: {name: digits\n")
    with pytest.raises(UserError, match=r"recipe\.yaml:\d+:\d+: bad YAML"):
        load_recipe(path)


def test_unknown_device_suggests_closest() -> None:
    with pytest.raises(UserError, match="unknown device 'x86-cpus'; did you mean 'x86-cpu'"):
        load_device("x86-cpus")


def test_ssh_device_without_host_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "dev.yaml"
    path.write_text("name: dev\naccess: {kind: ssh}\nruntimes: [{runtime: onnxruntime}]\n")
    with pytest.raises(UserError, match="access.kind 'ssh' needs access.host"):
        load_device(str(path))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["validate", "missing.yaml", "--device", "x86-cpu"], "missing.yaml: file not found"),
        (["validate", str(QUICKSTART), "--device", "nope"], "unknown device 'nope'"),
        (["validate", str(QUICKSTART), "--device", "x86-cpu", "--set", "teacher.model.name=resnet9"],
         "teacher.model.name: unknown model 'resnet9'"),
        (["run", str(QUICKSTART), "--device", "x86-cpu", "--set", "seed=abc"], "seed: Input should be a valid integer"),
        (["validate", str(QUICKSTART), "--device", "x86-cpu", "--set", "novalue"], "expected key.path=value"),
    ],
    ids=["missing-file", "unknown-device", "unknown-model", "wrong-type-on-run", "bad-set"],
)
def test_cli_bad_input_exits_2_with_one_line(args: list[str], expected: str) -> None:
    result = run_cli(*args, timeout=120)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1, result.stderr


def test_cli_validate_prints_plan() -> None:
    result = run_cli("validate", str(QUICKSTART), "--device", "x86-cpu", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "recipe and device profile are valid" in result.stdout
    assert "onnxruntime/fp32" in result.stdout


def test_jetson_profile_selects_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Jetson profile plans TensorRT engines; where TensorRT is absent they are reported, not silently dropped."""
    import edgekd.runtimes.tensorrt.requirement as requirement
    from edgekd.stages.export import export_plan

    device = load_device("jetson-orin-nano")
    monkeypatch.setattr(requirement, "unavailable", lambda: "TensorRT 8.6.1 is too old")
    plan, not_here = export_plan(device)
    assert ("tensorrt", "fp32") not in [(row.runtime, row.precision) for row in plan]
    assert not_here["tensorrt/fp32"] == "TensorRT 8.6.1 is too old"  # the reason, as the check gives it
    monkeypatch.setattr(requirement, "unavailable", lambda: None)
    plan, not_here = export_plan(device)
    assert {("tensorrt", "fp32"), ("tensorrt", "fp16")} <= {(row.runtime, row.precision) for row in plan}
    assert "int8 artifacts come from a quantize stage" in not_here["tensorrt/int8"]


def test_cli_zoo_lists_every_registered_name() -> None:
    import edgekd.stages  # noqa: F401
    from edgekd.data import DATASETS
    from edgekd.distill.losses import LOSSES
    from edgekd.models import MODELS
    from edgekd.pipeline.stage import STAGES

    result = run_cli("zoo", timeout=120, env={"COLUMNS": "250"})
    assert result.returncode == 0, result.stderr
    for registry in (MODELS, LOSSES, DATASETS, STAGES):
        for name in registry.names():
            assert name in result.stdout, f"{registry.kind} {name} missing from `edgekd zoo`"
    assert "PydanticUndefined" not in result.stdout
    assert run_cli("zoo", "lossses", timeout=120).returncode == 2
