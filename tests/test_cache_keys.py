"""Cache keys from what a stage reads: a cosmetic device edit re-runs nothing, a budget edit only select and report,
a runtime-library upgrade nothing upstream of export, and a stage inserted between distill and export is picked up by
every later key without editing them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from edgekd.config import Device, Recipe, load_device, load_recipe
from edgekd.pipeline.context import StageContext
from edgekd.pipeline.runner import PipelineRunner
from edgekd.pipeline.stage import STAGES, Stage, StageResult, register_stage
from edgekd.stages._models import load_plain_net, write_torch_artifact
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

UPSTREAM = ["train-teacher", "distill"]
MEASURED = ["export", "evaluate", "bench"]


def run(recipe: Recipe, device: Device, run_dir: Path, libraries: dict[str, str] | None = None) -> dict[str, str]:
    runner = PipelineRunner(recipe, device, run_dir, smoke=True, console=Console(quiet=True))
    if libraries:
        runner._libraries = {**runner._libraries, **libraries}
    manifest = runner.run()
    return {s["name"]: s["status"] for s in manifest["stages"] if s["status"] != "skipped"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recipe, Device, Path]:
    recipe = load_recipe(ROOT / "pipelines" / "quickstart.yaml", ["bench.runs=5", "bench.warmup=1"])
    device = load_device("x86-cpu")
    run_dir = tmp_path_factory.mktemp("cache") / "run"
    assert set(run(recipe, device, run_dir).values()) == {"done"}
    return recipe, device, run_dir


def test_a_second_run_is_all_cached(setup) -> None:
    recipe, device, run_dir = setup
    assert set(run(recipe, device, run_dir).values()) == {"cached"}


def test_a_cosmetic_device_edit_reruns_nothing(setup) -> None:
    recipe, device, run_dir = setup
    edited = device.model_copy(update={"description": "renamed in a review", "accelerator": "none"})
    assert set(run(recipe, edited, run_dir).values()) == {"cached"}


def test_a_budget_edit_reruns_only_select_and_report(setup) -> None:
    recipe, device, run_dir = setup
    budgets = device.budgets.model_copy(update={"max_latency_ms": 0.001})
    statuses = run(recipe, device.model_copy(update={"budgets": budgets}), run_dir)
    assert {k for k, v in statuses.items() if v == "done"} == {"select", "report"}
    run(recipe, device, run_dir)  # back to the original budgets for the other tests


def test_an_openvino_upgrade_reruns_nothing_upstream_of_export(setup) -> None:
    recipe, device, run_dir = setup
    statuses = run(recipe, device, run_dir, libraries={"openvino": "9999.0"})
    assert [statuses[s] for s in UPSTREAM] == ["cached", "cached"]
    assert [statuses[s] for s in MEASURED] == ["done"] * 3
    run(recipe, device, run_dir)


class Touch(Stage):
    """A stage between distill and export that re-saves the student with one weight changed."""

    name = "touch-student"
    order = 30
    needs = ("distill",)
    libraries = ("torch",)

    def enabled(self, recipe: Recipe, device: Device) -> bool:
        return True

    def config(self, recipe: Recipe, device: Device, smoke: bool) -> dict[str, Any]:
        return {}

    def run(self, ctx: StageContext) -> StageResult:
        student = ctx.artifact("student")
        assert student is not None
        net = load_plain_net(ctx, student)
        first = next(net.parameters())
        first.data.mul_(1.01)
        artifact = write_torch_artifact(ctx, net, student.info["model"], name="student", role="student", info={})
        return StageResult(artifacts=[artifact])


def test_a_new_stage_between_distill_and_export_is_picked_up_by_every_later_key(setup) -> None:
    recipe, device, run_dir = setup
    register_stage(Touch)
    try:
        statuses = run(recipe, device, run_dir)
    finally:
        STAGES._entries.pop(Touch.name)
    assert [statuses[s] for s in UPSTREAM] == ["cached", "cached"]
    assert statuses["touch-student"] == "done"
    assert all(statuses[s] == "done" for s in [*MEASURED, "select", "report"]), statuses
