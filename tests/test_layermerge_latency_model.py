"""benchmarks/layermerge_latency_model.py: the command line of each student and the figures read from a prune record."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edgekd.config.loader import load_recipe

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from layermerge_latency_model import RECIPE, plan_figures, run_args  # noqa: E402


def _overrides(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == "--set"]


def test_the_mobilenetv2_variant_is_the_recipe_with_its_student_and_no_stage_after_prune() -> None:
    args = run_args("mobilenetv2", "x86-cpu", Path("/tmp/out"), smoke=False)
    assert args[3:8] == ["run", str(RECIPE), "--device", "x86-cpu", "--out"] and "--smoke" not in args
    recipe = load_recipe(RECIPE, _overrides(args))  # what edgekd run builds from the same overrides
    assert recipe.student is not None and recipe.student.model.name == "mobilenetv2_x0_5"
    assert recipe.student.model.kwargs == {"small_input": False}
    assert recipe.prune is not None and recipe.prune.importance.mode == "proxy"
    assert recipe.export is None and recipe.bench is None and recipe.evaluate is None and recipe.report is None
    smoke = run_args("resnet14", "x86-cpu", Path("/tmp/out"), smoke=True)
    assert smoke[-1] == "--smoke" and "data={name: digits}" in _overrides(smoke)
    extra = run_args("mobilenetv2", "x86-cpu", Path("/tmp/out"), smoke=False, extra=["prune.latency.statistic=min"])
    recipe = load_recipe(RECIPE, _overrides(extra))
    assert recipe.prune is not None and recipe.prune.latency.statistic == "min"
    assert recipe.student is not None and recipe.student.model.name == "mobilenetv2_x0_5"


def test_plan_figures_count_the_plans_within_ten_percent() -> None:
    def result(method: str, predicted: float, measured: float, cause: str | None) -> dict:
        return {"method": method, "budget": "0.5", "predicted_ms": predicted, "measured_ms": measured,
                "relative_error": (predicted - measured) / measured, "error_cause": cause, "kept_convs": [1, 2],
                "reference_ms": 1.0, "drift_corrected_error": (predicted - measured) / measured,
                "merged_depth": 1}

    info = {"runtime": "onnxruntime", "precision": "fp32", "statistic": "p50", "batch_size": 1, "depth": 13,
            "entries": 32, "latency_model": "in-context-v1", "unpruned_measured_ms": 1.0,
            "reference_timings_ms": [1.0, 1.1, 0.9], "reference_spread": 0.2, "overhead_ms": 0.01,
            "results": [result("layermerge", 0.54, 0.5, None), result("merge-only", 0.75, 0.6, "interact"),
                        result("prune-only", 0.7, 0.8, "noise")]}
    figures = plan_figures(info)
    assert figures["within_tolerance"] == 1 and figures["plans_total"] == 3  # +8 %, +25 %, −12.5 %
    assert figures["max_abs_relative_error"] == pytest.approx(0.25)
    assert [p["cause"] for p in figures["plans"]] == [None, "interact", "noise"]
