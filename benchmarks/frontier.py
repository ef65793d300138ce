"""The budget frontier of a recipe: what its validation-selected artifact reaches from scratch in given wall times.

Usage::

    python benchmarks/frontier.py fmnist-deploy --device x86-cpu --budgets 20 45 90 --out runs/frontier \\
        --name frontier-fmnist-deploy
    python benchmarks/frontier.py fmnist-fm --device x86-cpu --budgets 90 --out runs/frontier-fm --name frontier-fm
    python benchmarks/frontier.py quickstart --device x86-cpu --budgets 2 4 --out /tmp/f --name f --smoke \\
        --record-dir /tmp/f-records          # a check that the script works; not a measurement

How the epochs are scaled. A calibration run (``<out>/calibration``) runs every stage of the recipe with one teacher
epoch and two student epochs, the student's teacher-output cache on one view (``augment_views: 1``): the first student
epoch is cold (it runs the teacher and records its logits), the second warm. From its manifest come the seconds of one
teacher epoch ``t_t`` (all ensemble members), of one warm student epoch ``t_s``, of a cold view on top of a warm epoch
``t_v``, and the fixed cost ``f`` of everything else (data loading, export, quantization and QAT, evaluation,
benchmarks). A point of budget ``B`` minutes then runs the recipe with its teacher and student epochs scaled by the
largest factor ``s`` for which ``f + E_t t_t + E_s t_s + min(V, E_s) t_v <= (1 - margin) * 60 B``, with ``E_t``,
``E_s`` the scaled epochs (at least 1) and ``V`` the recipe's ``augment_views`` (every epoch a fresh view when
unset); multistep milestones scale with them and the warm-up is kept below the epochs.

Each point runs from scratch in ``<out>/<B>min`` (``edgekd run`` with ``--set`` overrides) and is timed by the wall
clock of that call; its figures (epochs, predicted and measured seconds, and the selected artifact's parameters,
MACs, test and validation accuracy) are written to ``<out>/<B>min/frontier-point.json``, so a frontier run again
reads finished points back. A point folder without that file (an interrupted point) is refused: remove it to run
the point from scratch. The record (``results/<name>.json``) holds the calibration, the points and the anchor: a
hand-written PyTorch training at 0.9290 test accuracy in 38 minutes.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgekd._atomic import atomic_write_json
from edgekd.config import Recipe, TrainConfig, load_recipe
from edgekd.errors import UserError
from records import RESULTS, write_record
from reference_run import artifact_figures

ANCHOR = {"test_accuracy": 0.9290, "minutes": 38.0, "source": "a hand-written PyTorch training on 2 cores"}
POINT_FILE = "frontier-point.json"


def calibration_overrides(recipe: Recipe) -> list[str]:
    """The calibration's ``--set`` items: one teacher epoch, a cold and a warm student epoch on one cached view."""
    items = ["distill.train.epochs=2", "distill.train.augment_views=1", "distill.train.milestones=[]",
             "distill.train.warmup_epochs=0"]
    if recipe.teacher is not None and recipe.teacher.train is not None:
        items += ["teacher.train.epochs=1", "teacher.train.milestones=[]", "teacher.train.warmup_epochs=0"]
    return items


@dataclass(frozen=True)
class Costs:
    """Seconds of one teacher epoch, one warm student epoch, one cold view on top, and of everything else."""

    teacher_epoch: float
    student_epoch: float
    cold_view: float
    fixed: float

    def predict(self, teacher_epochs: int, student_epochs: int, views: int | None) -> float:
        """Predicted wall seconds of a run with these epochs (``views``: the recipe's augment_views)."""
        cold = student_epochs if views is None else min(views, student_epochs)
        return (self.fixed + teacher_epochs * self.teacher_epoch + student_epochs * self.student_epoch
                + cold * self.cold_view)


@dataclass(frozen=True)
class Plan:
    """The epochs of one point and what they are predicted to cost."""

    budget_minutes: float
    scale: float
    teacher_epochs: int
    student_epochs: int
    predicted_seconds: float


def costs_from_run(run_dir: Path, wall_seconds: float) -> Costs:
    """:class:`Costs` from the calibration run's manifest (one teacher epoch, two student epochs)."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    stages = {s["name"]: s for s in manifest["stages"]}
    teacher = stages.get("train-teacher", {})
    teacher_seconds = float(teacher.get("seconds") or 0.0) if teacher.get("status") == "done" else 0.0
    distill = stages.get("distill")
    if distill is None or distill.get("status") != "done":
        raise UserError(f"{run_dir}: the calibration run has no distill stage that ran; the frontier needs a student")
    history = distill["info"]["history"]
    cold, warm = (history[0]["seconds"], history[1]["seconds"]) if len(history) > 1 else (history[0]["seconds"],) * 2
    cold_view = max(0.0, float(cold) - float(warm))
    student_epoch = max(0.0, (float(distill["seconds"]) - cold_view) / len(history))
    fixed = max(0.0, wall_seconds - teacher_seconds - float(distill["seconds"]))
    return Costs(teacher_seconds, student_epoch, cold_view, fixed)


def plan(recipe: Recipe, costs: Costs, budget_minutes: float, margin: float) -> Plan:
    """The largest scale of the recipe's epochs whose predicted cost fits ``(1 - margin)`` of the budget (at least
    one epoch each, even if that does not fit: the point then says so)."""
    assert recipe.distill is not None
    teacher_base = recipe.teacher.train.epochs if recipe.teacher and recipe.teacher.train else 0
    student_base = recipe.distill.train.epochs
    views = recipe.distill.train.augment_views
    target = (1.0 - margin) * 60.0 * budget_minutes

    def epochs(scale: float) -> tuple[int, int]:
        return (max(1, round(scale * teacher_base)) if teacher_base else 0,
                max(1, round(scale * student_base)))

    low, high = 0.0, 1.0
    while costs.predict(*epochs(high), views) <= target and high < 1e4:
        low, high = high, high * 2
    for _ in range(60):  # bisection: predict() grows with the scale
        middle = (low + high) / 2
        low, high = (middle, high) if costs.predict(*epochs(middle), views) <= target else (low, middle)
    teacher_epochs, student_epochs = epochs(low)
    return Plan(budget_minutes, round(low, 4), teacher_epochs, student_epochs,
                round(costs.predict(teacher_epochs, student_epochs, views), 1))


def schedule_overrides(section: str, train: TrainConfig, epochs: int) -> list[str]:
    """``--set`` items giving ``section`` (a TrainConfig's key path) ``epochs`` epochs, milestones scaled alike."""
    items = [f"{section}.epochs={epochs}", f"{section}.warmup_epochs={min(train.warmup_epochs, epochs - 1)}"]
    if train.milestones:
        scaled = sorted({max(1, round(m * epochs / train.epochs)) for m in train.milestones})
        items.append(f"{section}.milestones=[{', '.join(str(m) for m in scaled)}]")
    return items


def point_overrides(recipe: Recipe, point: Plan) -> list[str]:
    """The ``--set`` items of a point."""
    assert recipe.distill is not None
    items = []
    if recipe.teacher is not None and recipe.teacher.train is not None:
        items += schedule_overrides("teacher.train", recipe.teacher.train, point.teacher_epochs)
    return items + schedule_overrides("distill.train", recipe.distill.train, point.student_epochs)


def run_edgekd(recipe: str, device: str, out: Path, overrides: list[str], smoke: bool) -> tuple[int, float]:
    """``edgekd run`` from scratch in ``out``: its exit code and wall seconds."""
    command = [sys.executable, "-m", "edgekd", "run", recipe, "--device", device, "--out", str(out),
               *(f"--set={item}" for item in overrides), *(["--smoke"] if smoke else [])]
    print("+ " + shlex.join(command[1:]), flush=True)
    start = time.perf_counter()
    code = subprocess.run(command).returncode
    return code, time.perf_counter() - start


def selected_figures(run_dir: Path) -> dict[str, Any]:
    """The validation-selected artifact's name and figures (parameters, MACs, test and validation accuracy)."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    artifacts = {a["name"]: a for a in manifest.get("artifacts", [])}
    selected = manifest.get("selected")
    if selected not in artifacts:
        return {"selected": None, "chosen_on_split": manifest.get("selected_by")}
    figures = artifact_figures(artifacts[selected])
    return {"selected": selected, "chosen_on_split": manifest.get("selected_by"),
            **{k: figures.get(k) for k in ("parameters", "macs", "test_accuracy", "validation_accuracy")}}


def fresh_folder(path: Path) -> None:
    """Refuse (UserError) a folder that holds an unfinished run: the frontier times runs from scratch."""
    if path.exists() and any(path.iterdir()):
        raise UserError(f"{path}: holds an unfinished run (no {POINT_FILE}); remove it to run this point from scratch")


def calibrate(args: argparse.Namespace, recipe: Recipe) -> dict[str, Any]:
    """The calibration's costs, measured once and kept in ``<out>/calibration/frontier-point.json``."""
    folder = args.out / "calibration"
    if (folder / POINT_FILE).is_file():
        return dict(json.loads((folder / POINT_FILE).read_text()))
    fresh_folder(folder)
    overrides = [*args.overrides, *calibration_overrides(recipe)]
    code, wall = run_edgekd(args.recipe, args.device, folder, overrides, args.smoke)
    if code not in (0, 1):
        raise UserError(f"calibration: edgekd run exited {code}")
    result = {"wall_seconds": round(wall, 1), "exit_code": code, **asdict(costs_from_run(folder, wall))}
    atomic_write_json(folder / POINT_FILE, result)
    return result


def run_point(args: argparse.Namespace, recipe: Recipe, costs: Costs, budget: float) -> dict[str, Any]:
    """One point of the frontier, run (or read back when finished earlier)."""
    folder = args.out / f"{budget:g}min"
    if (folder / POINT_FILE).is_file():
        return dict(json.loads((folder / POINT_FILE).read_text()))
    fresh_folder(folder)
    point = plan(recipe, costs, budget, args.margin)
    code, wall = run_edgekd(args.recipe, args.device, folder, [*args.overrides, *point_overrides(recipe, point)],
                            args.smoke)
    if code not in (0, 1):
        raise UserError(f"{budget:g} min point: edgekd run exited {code}")
    result = {**asdict(point), "wall_seconds": round(wall, 1), "wall_minutes": round(wall / 60, 2),
              "within_budget": wall <= 60 * budget, "exit_code": code, **selected_figures(folder)}
    atomic_write_json(folder / POINT_FILE, result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="recipe name or YAML file, as `edgekd run` takes it")
    parser.add_argument("--device", required=True, help="device profile name or YAML file")
    parser.add_argument("--budgets", nargs="+", type=float, default=[20.0, 45.0, 90.0], help="wall budgets, minutes")
    parser.add_argument("--out", required=True, type=Path, help="folder of the calibration and point runs")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="recipe override key=value")
    parser.add_argument("--margin", type=float, default=0.05, help="share of each budget kept free for noise")
    parser.add_argument("--smoke", action="store_true", help="pass --smoke to edgekd run (checks the script only)")
    parser.add_argument("--name", required=True, help="record name: <record-dir>/<name>.json")
    parser.add_argument("--record-dir", type=Path, default=RESULTS, help="where the record goes (default results/)")
    args = parser.parse_args(argv)
    try:
        if not 0 <= args.margin < 1 or any(b <= 0 for b in args.budgets):
            raise UserError("--margin must lie in [0, 1) and every budget be positive")
        recipe = load_recipe(args.recipe, args.overrides)
        if recipe.distill is None:
            raise UserError(f"{args.recipe}: the frontier scales a student's training; the recipe has no distill")
        calibration = calibrate(args, recipe)
        costs = Costs(**{k: calibration[k] for k in ("teacher_epoch", "student_epoch", "cold_view", "fixed")})
        points = [run_point(args, recipe, costs, budget) for budget in sorted(args.budgets)]
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    figures = {"recipe": recipe.name, "device": args.device, "smoke": args.smoke, "margin": args.margin,
               "overrides": args.overrides, "calibration": calibration, "points": points, "anchor": ANCHOR}
    title = f"Budget frontier of {recipe.name} on {args.device}" + (" (smoke)" if args.smoke else "")
    notes = ("each point from scratch, wall time of its edgekd run; the selected artifact is chosen on validation, "
             "its test accuracy reported; epochs scaled from a calibration run")
    if args.smoke:
        notes += "; smoke: every training ran one epoch on a subset whatever its planned epochs (a check, no figure)"
    path = write_record(args.name, title=title, figures=figures, out_dir=args.record_dir, notes=notes)
    print(f"record: {path}")
    for point in points:
        accuracy = point.get("test_accuracy")
        shown = f"{accuracy:.4f}" if isinstance(accuracy, float) else "n/a"
        print(f"  {point['budget_minutes']:g} min: {point['teacher_epochs']} + {point['student_epochs']} epochs, "
              f"{point['wall_minutes']:.1f} min, {point.get('selected')} test {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
