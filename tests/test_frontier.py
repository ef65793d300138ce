"""benchmarks/frontier.py: the epochs a budget buys (hand arithmetic), the overrides of a point, costs from a run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from edgekd.config import Recipe

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from frontier import Costs, Plan, costs_from_run, plan, point_overrides  # noqa: E402


def recipe(**distill_train: object) -> Recipe:
    data = yaml.safe_load((ROOT / "pipelines" / "quickstart.yaml").read_text())
    data["teacher"]["train"]["epochs"] = 20
    data["distill"]["train"].update({"epochs": 50, "augment_views": 8, **distill_train})
    return Recipe.model_validate(data)


def test_plan_takes_the_most_epochs_that_fit() -> None:
    # cost = 100 + 10 E_t + 5 E_s + 3 min(8, E_s); 600 s available. Scale 1 (20 + 50 epochs) costs 574 s; the
    # largest fitting scale rounds to 21 + 53 epochs: 100 + 210 + 265 + 24 = 599 s (21 + 54 would be 604 s).
    costs = Costs(teacher_epoch=10.0, student_epoch=5.0, cold_view=3.0, fixed=100.0)
    assert costs.predict(20, 50, 8) == 574.0
    point = plan(recipe(), costs, budget_minutes=10.0, margin=0.0)
    assert (point.teacher_epochs, point.student_epochs, point.predicted_seconds) == (21, 53, 599.0)
    # with a fresh view every epoch each student epoch is cold: 100 + 10 E_t + 8 E_s <= 600 at E_t, E_s = 20s, 50s
    fresh = plan(recipe(augment_views=None), costs, budget_minutes=10.0, margin=0.0)
    assert (fresh.teacher_epochs, fresh.student_epochs) == (17, 41)  # 100 + 170 + 328 = 598; 17 + 42 is 606
    # a budget below the fixed cost still trains one epoch each, and says what it will cost
    tiny = plan(recipe(), costs, budget_minutes=1.0, margin=0.0)
    assert (tiny.teacher_epochs, tiny.student_epochs, tiny.predicted_seconds) == (1, 1, 118.0)


def test_point_overrides_scale_milestones_and_keep_the_warmup_below_the_epochs() -> None:
    multistep = recipe(schedule="multistep", milestones=[25, 40], warmup_epochs=1)
    items = point_overrides(multistep, Plan(10.0, 0.5, 10, 25, 0.0))
    assert items == ["teacher.train.epochs=10", "teacher.train.warmup_epochs=1", "distill.train.epochs=25",
                     "distill.train.warmup_epochs=1", "distill.train.milestones=[12, 20]"]
    assert "distill.train.warmup_epochs=0" in point_overrides(multistep, Plan(1.0, 0.02, 1, 1, 0.0))


def test_costs_come_from_the_calibration_manifest(tmp_path: Path) -> None:
    history = [{"seconds": 30.0}, {"seconds": 20.0}]  # cold epoch 30 s, warm epoch 20 s
    manifest = {"stages": [{"name": "train-teacher", "status": "done", "seconds": 40.0, "info": {}},
                           {"name": "distill", "status": "done", "seconds": 56.0, "info": {"history": history}}]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    costs = costs_from_run(tmp_path, wall_seconds=200.0)
    # the cold view costs 10 s on top; the two epochs take the rest of the stage: (56 - 10) / 2
    assert costs == Costs(teacher_epoch=40.0, student_epoch=23.0, cold_view=10.0, fixed=104.0)
    assert costs.predict(1, 2, 1) == pytest.approx(200.0)  # the calibration run itself
