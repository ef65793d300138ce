"""The runtime capability table (edgekd/capabilities.py): device profiles are checked against it before any work,
the runtime registry and the stages read it, and nothing a profile asks for is skipped without a reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from edgekd.capabilities import CAPABILITIES, RUNTIME_SPECS, capability, device_kind, offered_precisions
from edgekd.cli import main
from edgekd.config import load_device
from tests.conftest import ROOT

QUICKSTART = ROOT / "pipelines" / "quickstart.yaml"


def device_file(tmp_path: Path, *runtimes: dict) -> Path:
    path = tmp_path / "device.yaml"
    path.write_text(yaml.safe_dump({"name": "board", "runtimes": list(runtimes)}))
    return path


@pytest.mark.parametrize("runtimes, key, message", [
    ([{"runtime": "torch", "precisions": ["int8"]}], "runtimes.0.precisions",
     "runtime 'torch' has no int8 artifacts in edgekd (it offers fp32, bf16"),
    ([{"runtime": "onnxruntime", "precisions": ["fp32", "bf16"]}], "runtimes.0.precisions",
     "runtime 'onnxruntime' has no bf16 artifacts in edgekd (it offers fp32, int8"),
    ([{"runtime": "openvino", "providers": ["CPUExecutionProvider"]}], "runtimes.0.providers",
     "providers are ONNX Runtime execution providers; runtime 'openvino' takes none"),
    ([{"runtime": "onnxruntime", "device": "GPU"}], "runtimes.0.device",
     "runtime 'onnxruntime' takes no device (ONNX Runtime picks it with providers)"),
    ([{"runtime": "tensorrt", "device": "CPU"}], "runtimes.0.device", "runtime 'tensorrt' runs on cuda devices"),
    ([{"runtime": "openvino", "device": "TPU"}], "runtimes.0.device",
     "runtime 'openvino' runs on cpu, gpu, npu devices, not 'TPU'"),
    ([{"runtime": "onnxruntime"}, {"runtime": "onnxruntime", "precisions": ["int8"]}], "",
     "runtime onnxruntime listed more than once"),
])
def test_profile_mistakes_are_exit_2_from_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   runtimes: list[dict], key: str, message: str) -> None:
    device = device_file(tmp_path, *runtimes)
    code = main(["validate", str(QUICKSTART), "--device", str(device)])
    stderr = capsys.readouterr().err.strip()
    assert code == 2, stderr
    assert stderr.startswith(f"error: {device}: {key + ': ' if key else ''}{message}"), stderr
    assert "\n" not in stderr


def test_defaults_come_from_the_runtime() -> None:
    jetson = load_device("jetson-orin-nano")
    assert jetson.runtime("tensorrt").device == "cuda:0" and jetson.runtime("tensorrt").kind == "cuda"  # type: ignore
    x86 = load_device("x86-cpu")
    assert x86.runtime("onnxruntime").device == "CPU"  # type: ignore[union-attr]
    assert device_kind("GPU.1") == "gpu" and device_kind("cuda:1") == "cuda"


def test_every_shipped_profile_is_in_the_table() -> None:
    for path in sorted((ROOT / "devices").glob("*.yaml")):
        for target in load_device(str(path)).runtimes:
            for precision in target.precisions:
                assert capability(target.runtime, precision) is not None, (path.name, target.runtime, precision)


def test_the_runtime_registry_reads_the_table() -> None:
    from edgekd.runtime import RUNTIMES

    assert sorted(RUNTIMES.names()) == sorted(RUNTIME_SPECS)
    for name, spec in RUNTIME_SPECS.items():
        meta = RUNTIMES.entry(name).meta
        assert meta["formats"] == spec.formats and meta["devices"] == spec.device_kinds
        assert meta["precisions"] == offered_precisions(name)


def test_every_export_row_has_a_builder_and_every_row_a_known_format() -> None:
    from edgekd.export.build import exporter
    from edgekd.runtime.base import FORMAT_SUFFIXES

    device = load_device("x86-cpu")
    for row in CAPABILITIES:
        assert row.format in set(FORMAT_SUFFIXES.values()) and row.format in RUNTIME_SPECS[row.runtime].formats
        if row.built_by == "export":
            fmt, builder = exporter(row.runtime, row.precision, device)
            assert fmt == row.format and callable(builder)
        else:
            with pytest.raises(KeyError):
                exporter(row.runtime, row.precision, device)


def test_exporters_and_int8_builds_get_the_device_the_profile_names_for_their_runtime() -> None:
    from edgekd.config import Device
    from edgekd.export.build import exporter

    device = Device.model_validate({"name": "two-gpus", "runtimes": [
        {"runtime": "tensorrt", "precisions": ["fp16"], "device": "cuda:1"},
        {"runtime": "onnxruntime", "precisions": ["fp32"]}]})
    assert device.device_of("tensorrt") == "cuda:1"
    assert device.device_of("onnxruntime") == "CPU"  # listed without a device: its default
    assert device.device_of("openvino") == "CPU"  # not listed: its default
    _, builder = exporter("tensorrt", "fp16", device)
    assert builder.keywords == {"precision": "fp16", "device": "cuda:1"}  # type: ignore[attr-defined]


def test_nothing_requested_is_skipped_without_a_reason(tmp_path: Path) -> None:
    """A profile listing every pair of the table: export builds or explains every non-INT8 pair, quantize every INT8
    one (TensorRT's with its requirement where it is absent); the torch rows are measured as they are."""
    from edgekd.config import load_recipe
    from edgekd.runtime.hardware import unmet_requirement
    from edgekd.stages.export import export_plan
    from edgekd.stages.quantize import Quantize, unmet

    runtimes = [{"runtime": name, "precisions": list(offered_precisions(name))} for name in RUNTIME_SPECS]
    device = load_device(str(device_file(tmp_path, *runtimes)))
    built, not_built = export_plan(device)
    accounted = {f"{r.runtime}/{r.precision}" for r in built} | set(not_built)
    assert accounted == {f"{r.runtime}/{r.precision}" for r in CAPABILITIES}
    assert all(not_built[f"{r.runtime}/int8"].startswith("int8 artifacts come from a quantize stage")
               for r in CAPABILITIES if r.precision == "int8")
    assert not_built["torch/fp32"].startswith("the teacher and student themselves")
    recipe = load_recipe(ROOT / "pipelines" / "fmnist-quantize.yaml")
    lines = Quantize().plan(recipe, device)
    int8 = [row for row in CAPABILITIES if row.precision == "int8"]
    assert {"onnxruntime", "openvino", "tensorrt"} <= {row.runtime for row in int8}
    why_not = {f"{row.runtime}/int8": why for row in int8
               if (why := unmet_requirement(row, RUNTIME_SPECS[row.runtime].default_device)) is not None}
    assert unmet(device) == why_not and all(f"not {pair}: {why}" in lines for pair, why in why_not.items())
    here = [row.runtime for row in int8 if f"{row.runtime}/int8" not in why_not]
    assert lines[0].startswith(f"INT8 for {', '.join(here)}:")


def test_nncf_quantizes_for_the_device_kind_of_the_profile(tmp_path: Path) -> None:
    from edgekd.stages.quantize import nncf_target

    gpu = load_device(str(device_file(tmp_path, {"runtime": "openvino", "device": "GPU.1",
                                                 "precisions": ["fp32", "int8"]})))
    assert nncf_target(gpu, "openvino") == "GPU"
    assert nncf_target(load_device("x86-cpu"), "openvino") == "CPU"


def test_torch_takes_its_device_from_the_profile(tmp_path: Path) -> None:
    from edgekd.stages._runtime import runner_options

    device = load_device(str(device_file(tmp_path, {"runtime": "torch", "device": "cuda:1"},
                                         {"runtime": "onnxruntime", "providers": ["CPUExecutionProvider"]})))
    assert runner_options(device, "torch", "fp32")["device"] == "cuda:1"
    assert runner_options(device, "onnxruntime", "fp32") == {"threads": None, "providers": ["CPUExecutionProvider"]}
    assert "device" not in runner_options(load_device("x86-cpu"), "onnxruntime", "fp32")


def test_a_torch_runner_gives_the_thread_count_back(tmp_path: Path) -> None:
    """torch.set_num_threads is process-wide: closing the runner restores what training had before."""
    from edgekd.models import create
    from edgekd.runtime import open_runner, save_torch_artifact

    path = save_torch_artifact(create("resnet8", num_classes=10, in_channels=1),
                               {"name": "resnet8", "kwargs": {"num_classes": 10, "in_channels": 1}}, (0.5,), (0.25,),
                               tmp_path / "model.pt")
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    with open_runner("torch", path, threads=wanted):
        assert torch.get_num_threads() == wanted
    assert torch.get_num_threads() == before


def test_zoo_runtimes_prints_the_table_and_why_not_here() -> None:
    from tests.conftest import run_cli

    result = run_cli("zoo", "runtimes", env={"COLUMNS": "220"})
    assert result.returncode == 0, result.stderr
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in result.stdout.splitlines() if "│" in line]
    for row in CAPABILITIES:
        assert [row.runtime, row.precision, row.format] in [c[:3] for c in cells], row
    if "not on this host:" in result.stdout:
        assert "edgekd[tensorrt]" in result.stdout or "tensorrt/" not in result.stdout


def test_debug_comes_from_the_parsed_option_not_from_argv(capsys: pytest.CaptureFixture[str]) -> None:
    """`--debug` given as the value of another option is not the debug flag: the error stays one line."""
    code = main(["validate", "missing.yaml", "--device", "x86-cpu", "--set", "--debug"])
    assert code == 2
    assert capsys.readouterr().err.strip() == "error: missing.yaml: file not found"
    with pytest.raises(Exception, match="missing.yaml: file not found"):
        main(["validate", "missing.yaml", "--device", "x86-cpu", "--debug"])
