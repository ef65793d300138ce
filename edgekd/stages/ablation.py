"""Stage `ablation`: the student per variant (no-kd, kd, dkd, takd, auto-ta, ta-grid) and seed, one budget, test
accuracy.

Each (variant, seed) is a resumable sub-run (``ta-grid`` has one row per candidate of `select-assistant`, and the
selected assistant is ranked against the grid's best): the chain's step folders, then ``result.json`` once the
student's test accuracy is measured. Sub-runs live in the run directory's cache, ``cache/ablation/<key>/``, keyed by
what decides their numbers (the chain and its losses, the seed, the budget, the teacher's SHA-256, the data, smoke,
edgekd's and torch's versions), not in the stage's folder: widening or narrowing an ablation (other seeds or
variants: a new attempt of the stage) reads every finished sub-run back and continues a half-finished one at its
first unfinished step. The unfinished sub-runs are independent tasks of :mod:`edgekd.executor` (Ray tasks on this
machine or a cluster, or in sequence without Ray; the same numbers either way); each writes its own ``result.json``,
so an interrupted stage keeps every sub-run that finished. Chains are trained by the same function as stage
`distill`; with the same seed every variant's student starts from the same weights, so a variant whose chain equals
an earlier variant's (the selected TA is the manual one) has the same key and numbers: they are taken over and
marked ``same_chain_as``. Test accuracy is measured in torch on the test split, of the best epoch on validation (the
weights kept) and of the last epoch; a result without the last-epoch figures is completed from the sub-run's
checkpoints. A smoke run trains one epoch per model and only the first two seeds.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from edgekd import __version__
from edgekd._atomic import atomic_write_json
from edgekd.config import Device, LossTerm, ModelRef, Recipe, TrainConfig
from edgekd.data import DataBundle
from edgekd.distill.ablation import GRID_PREFIX, VARIANTS, dkd_term, grid_check, summarize
from edgekd.distill.assistants import ref_label
from edgekd.distill.chain import ChainStep
from edgekd.distill.trainer import CHECKPOINT, last_epoch_record
from edgekd.errors import UserError
from edgekd.executor import Executor
from edgekd.pipeline.context import StageContext
from edgekd.pipeline.hashing import sha256_json
from edgekd.pipeline.manifest import read_json
from edgekd.pipeline.stage import ReportSection, Stage, StageResult, register_stage
from edgekd.report.sections import ablation_section, as_sections
from edgekd.stages._chain import selected_assistant, split_accuracy, train_refs
from edgekd.stages._models import load_plain_net
from edgekd.stages._training import smoke_config

RESULT = "result.json"
#: where the sub-runs live, relative to the run directory (kept across attempts of the stage)
SUB_RUNS = Path("cache") / "ablation"
SMOKE_SEEDS = 2


def _budget(recipe: Recipe, smoke: bool) -> TrainConfig:
    assert recipe.ablation is not None and recipe.distill is not None
    return smoke_config(recipe.ablation.train or recipe.distill.train, smoke)


def _seeds(recipe: Recipe, smoke: bool) -> list[int]:
    """The seeds to train: in a smoke run only the first two (still enough for a standard deviation)."""
    assert recipe.ablation is not None
    return recipe.ablation.seeds[:SMOKE_SEEDS] if smoke else recipe.ablation.seeds


def _rows(ctx: StageContext, variants: Sequence[str]) -> list[tuple[str, str, list[ModelRef]]]:
    """(row name, variant, assistants) of every table row: one per variant, one per candidate for ``ta-grid``."""
    assert ctx.recipe.distill is not None
    rows: list[tuple[str, str, list[ModelRef]]] = []
    for variant in variants:
        if variant == "takd":
            rows.append((variant, variant, ctx.recipe.distill.assistants))
        elif variant == "auto-ta":
            rows.append((variant, variant, [selected_assistant(ctx)]))
        elif variant == "ta-grid":
            rows += [(GRID_PREFIX + c["name"], variant, [ModelRef.model_validate(c["model"])])
                     for c in _selection(ctx)["candidates"]]
        else:
            rows.append((variant, variant, []))
    return rows


def _selection(ctx: StageContext) -> dict[str, Any]:
    """What stage `select-assistant` recorded: its candidates and the selected one."""
    record = ctx.record("select-assistant")
    if record is None:
        raise UserError("ablation variant 'ta-grid' needs the select-assistant stage's candidates")
    return dict(record["info"])


def objective(recipe: Recipe, variant: str, epochs: int) -> tuple[list[LossTerm], float]:
    """The distillation terms and cross-entropy weight a variant trains its chain with."""
    assert recipe.distill is not None
    if variant == "no-kd":
        return [], 1.0
    if variant == "dkd":
        return [dkd_term(epochs)], 1.0
    return recipe.distill.losses, recipe.distill.ce_weight


@register_stage
class Ablation(Stage):
    name = "ablation"
    order = 85
    needs = ("train-teacher", "select-assistant")
    description = "student without KD, with KD or DKD, through the manual and the selected TA: test accuracy over seeds"
    libraries = ("torch",)

    def enabled(self, recipe: Recipe, device: Device) -> bool:
        return recipe.ablation is not None

    def config(self, recipe: Recipe, device: Device, smoke: bool) -> dict[str, Any]:
        assert recipe.ablation is not None and recipe.distill is not None and recipe.student is not None
        variants = recipe.ablation.variants or []
        return {
            "seeds": _seeds(recipe, smoke), "variants": variants,
            "train": _budget(recipe, smoke).model_dump(mode="json"),
            "student": recipe.student.model.model_dump(mode="json"),
            "losses": [term.model_dump(mode="json") for term in recipe.distill.losses],
            "ce_weight": recipe.distill.ce_weight,
            "assistants": [r.model_dump(mode="json") for r in recipe.distill.assistants] if "takd" in variants else [],
        }

    def report_sections(self, record: dict[str, Any], manifest: dict[str, Any], plots: dict[str, Path]
                        ) -> list[ReportSection]:
        info = record["info"]
        return as_sections(ablation_section(info)) if "table" in info else []

    def run(self, ctx: StageContext) -> StageResult:
        recipe = ctx.recipe
        assert recipe.ablation is not None and recipe.distill is not None and recipe.student is not None
        data = ctx.data()
        config = _budget(recipe, ctx.smoke)
        teacher_artifact = ctx.artifact("teacher")
        teacher_net = load_plain_net(ctx, teacher_artifact) if teacher_artifact is not None else None
        teacher_sha = teacher_artifact.sha256 if teacher_artifact is not None else None
        variants = recipe.ablation.variants or []
        seeds = _seeds(recipe, ctx.smoke)
        first_with: dict[str, str] = {}  # chain identity -> the first variant that trains it
        rows = _rows(ctx, variants)
        plan: list[tuple[str, int, str | None, Path]] = []  # (row, seed, twin row or None, sub-run folder)
        todo: list[tuple[Any, ...]] = []  # executor tasks of the sub-runs not finished yet
        found: dict[Path, dict[str, Any]] = {}
        for row, variant, assistants in rows:
            chain = [(f"step-{i}-{ref_label(ref)}", ref) for i, ref in enumerate(assistants, start=1)]
            chain.append(("student", recipe.student.model))
            names = ([] if variant == "no-kd" else ["teacher"]) + [ref_label(r) for r in assistants] + ["student"]
            losses, ce_weight = objective(recipe, variant, config.epochs)
            identity = json.dumps([[t.model_dump(mode="json") for t in losses], ce_weight,
                                   [ref.model_dump(mode="json") for _, ref in chain]])
            twin = first_with.setdefault(identity, row)
            for seed in seeds:
                folder = _sub_run(ctx, identity, seed, config, None if variant == "no-kd" else teacher_sha)
                plan.append((row, seed, None if twin == row else twin, folder))
                if twin != row or folder in found:
                    continue
                finished = read_json(ctx.run_dir / folder / RESULT)
                if finished is not None and "last_test_accuracy" in finished:
                    found[folder] = {**finished, "reused": True}
                else:
                    found[folder] = {}
                    kd = variant != "no-kd"
                    todo.append((ctx.run_dir, folder, row, seed, chain, names, config, (losses, ce_weight),
                                 recipe.teacher.model if kd and recipe.teacher is not None else None))
        executor = Executor(recipe.execution)
        if todo:
            ctx.log(f"{len(todo)} sub-run(s) to train, {len(found) - len(todo)} finished earlier; "
                    f"executor: {executor.describe()}")
        trained = executor.map(sub_run_task, todo, shared=(data, teacher_net),
                               on_done=lambda i, r: ctx.log(f"{r['variant']} seed {r['seed']}: trained"))
        for args, result in zip(todo, trained):
            found[args[1]] = {**result, "reused": False}
        runs: list[dict[str, Any]] = []
        for row, seed, twin_row, folder in plan:
            if twin_row is not None:  # e.g. the selected TA is the manual one: same training, same numbers
                earlier = next(r for r in runs if r["variant"] == twin_row and r["seed"] == seed)
                result = {**earlier, "variant": row, "same_chain_as": twin_row}
            else:
                result = {**found[folder], "variant": row, "folder": folder.as_posix()}
            note = f" (same chain as {twin_row})" if twin_row is not None else ""
            note = note or (" (finished earlier)" if result["reused"] else "")
            ctx.log(f"{row} seed {seed}: test accuracy {result['test_accuracy']:.4f}{note}")
            runs.append(result)
        table = summarize(runs, [row for row, _, _ in rows])
        for line in table:
            std = "n/a" if line["std"] is None else f"{line['std']:.4f}"
            ctx.log(f"{line['variant']:>8}: {line['mean']:.4f} ± {std} over seeds {line['seeds']}")
        grid = grid_check(table, _selection(ctx)["selected"]) if "ta-grid" in variants else None
        if grid is not None:
            verdict = "worse than" if grid["finding"] else "not distinguishable from"
            ctx.log(f"selected assistant {grid['selected']}: rank {grid['rank']} of {grid['candidates']} in the grid, "
                    f"{grid['gap'] * 100:.2f} points below {grid['best']} ({verdict} it at spread "
                    f"{grid['spread'] * 100:.2f})")
        return StageResult(info={
            "seeds": seeds, "variants": variants, "epochs": config.epochs,
            "train_images": len(data.train), "test_images": len(data.test), "table": table, "runs": runs,
            "descriptions": {v: VARIANTS[v] for v in variants}, "grid": grid,
            "statistic": "mean ± sample standard deviation (ddof = 1) of test accuracy over seeds",
        })


def _sub_run(ctx: StageContext, chain: str, seed: int, config: TrainConfig, teacher_sha: str | None) -> Path:
    """The folder of one sub-run, relative to the run directory: ``cache/ablation/<key>``, keyed by everything that
    decides its numbers (``chain``: its models, losses and cross-entropy weight; the teacher: None without KD)."""
    key = sha256_json({"chain": chain, "seed": seed, "train": config.model_dump(mode="json"), "teacher": teacher_sha,
                       "data": ctx.recipe.data.model_dump(mode="json"), "smoke": ctx.smoke,
                       "edgekd": __version__, "torch": torch.__version__})
    return SUB_RUNS / key[:16]


def _last_epoch(student: ChainStep, folder: Path, data: DataBundle) -> dict[str, Any]:
    """``last_epoch``, ``last_val_accuracy`` and ``last_test_accuracy`` of a chain's student: the weights of its final
    epoch (the trainer's checkpoint in ``folder``), which a paper reporting the final epoch would keep."""
    checkpoint = torch.load(folder / CHECKPOINT, map_location="cpu", weights_only=True)
    net = copy.deepcopy(student.net)
    net.load_state_dict(checkpoint["net"])
    return {**last_epoch_record(student.record["history"]),
            "last_test_accuracy": split_accuracy(net.eval(), data.test, data)}


def sub_run_task(data: DataBundle, teacher_net: nn.Module | None, run_dir: Path, folder: Path, variant: str,
                 seed: int, chain: list[tuple[str, ModelRef]], names: list[str], config: TrainConfig,
                 terms: tuple[list[LossTerm], float], teacher_ref: ModelRef | None) -> dict[str, Any]:
    """An executor task: train (or finish) one (variant, seed) sub-run in ``run_dir / folder`` and write its
    ``result.json`` (the student's test accuracy and every step's metrics); its result.

    ``teacher_ref`` is None for cross-entropy training without a teacher.
    """
    losses, ce_weight = terms
    teacher = None
    if teacher_ref is not None:
        assert teacher_net is not None, "KD variants need the trained teacher"
        teacher = (teacher_net, teacher_ref)
    steps = train_refs(run_dir, data, chain, run_dir / folder, teacher=teacher, losses=losses, config=config,
                          seed=seed, ce_weight=ce_weight, console=Console(stderr=True))
    student = steps[-1]
    result = {
        "variant": variant, "seed": seed,
        "test_accuracy": split_accuracy(student.net, data.test, data),
        "val_accuracy": student.record["val_accuracy"],
        **_last_epoch(student, run_dir / folder / chain[-1][0], data),
        "steps": [{k: r[k] for k in ("name", "teacher", "parameters", "best_epoch", "val_accuracy", "reused")}
                  for r in (s.record for s in steps)],
        "chain": names, "folder": folder.as_posix(),
    }
    atomic_write_json(run_dir / folder / RESULT, result)
    return result
