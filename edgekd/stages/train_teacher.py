"""Stage `train-teacher`: train the teacher with cross-entropy (or take it from a checkpoint as is).

With `teacher.ensemble: M` it trains M members with seeds `seed`, `seed + 1`, ... (each a resumable step in
`train-teacher/members/member-<m>/`, :mod:`edgekd.distill.ensemble`) and writes their ensemble, the mean of their
logits, as the teacher artifact; each member's and the ensemble's validation accuracy and the training seconds are
recorded. The teacher is first checked on one batch: (N, classes) logits, or exit 2 before any training.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from edgekd import _distributed as dist
from edgekd.config import Device, ModelRef, Recipe, TrainConfig
from edgekd.data import DataBundle
from edgekd.distill.ensemble import member_name, train_ensemble
from edgekd.distill.trainer import Trainer, accuracy, last_epoch_record
from edgekd.models.ensemble import ensemble_spec
from edgekd.pipeline.context import StageContext
from edgekd.pipeline.stage import TRAINING_SECTION, ReportSection, Stage, StageResult, register_stage
from edgekd.report.sections import training_line
from edgekd.runtime import Normalize
from edgekd.stages._chain import split_accuracy
from edgekd.stages._checks import check_model
from edgekd.stages._models import build_net, layout_name, model_spec, write_torch_artifact
from edgekd.stages._training import smoke_config


@register_stage
class TrainTeacher(Stage):
    name = "train-teacher"
    order = 10
    description = "train the teacher with cross-entropy; best epoch on validation"
    libraries = ("torch",)
    distributed = True

    def enabled(self, recipe: Recipe, device: Device) -> bool:
        return recipe.teacher is not None

    def config(self, recipe: Recipe, device: Device, smoke: bool) -> dict[str, Any]:
        assert recipe.teacher is not None
        # a single teacher keeps the key it had before ensembles existed
        return recipe.teacher.model_dump(mode="json", exclude={"ensemble"} if recipe.teacher.ensemble == 1 else None)

    def plan(self, recipe: Recipe, device: Device) -> list[str]:
        assert recipe.teacher is not None
        epochs = recipe.teacher.train.epochs if recipe.teacher.train else "none (used as is from its checkpoint)"
        count = recipe.teacher.ensemble
        members = f", ensemble of {count} (seeds {recipe.seed}..{recipe.seed + count - 1})" if count > 1 else ""
        return [f"teacher {recipe.teacher.model.name} {recipe.teacher.model.kwargs or ''}, epochs {epochs}{members}"]

    def check(self, recipe: Recipe, device: Device, data: Callable[[], DataBundle]) -> None:
        assert recipe.teacher is not None
        check_model(recipe.teacher.model, "teacher.model", data())

    def training_curve(self, record: dict[str, Any]) -> tuple[str, list[dict[str, float]]] | None:
        return "teacher", record["info"].get("history", [])

    def report_sections(self, record: dict[str, Any], manifest: dict[str, Any], plots: dict[str, Path]
                        ) -> list[ReportSection]:
        lines = training_line(self.name, record["info"]) + ensemble_line(record["info"])
        return [ReportSection(TRAINING_SECTION, lines)] if lines else []

    def run(self, ctx: StageContext) -> StageResult:
        teacher = ctx.recipe.teacher
        assert teacher is not None
        data = ctx.data()
        net, spec = build_net(teacher.model, data, seed=ctx.recipe.seed)
        info: dict[str, Any] = {}
        if teacher.ensemble > 1:
            assert teacher.train is not None
            net, spec, info = _train_ensemble(ctx, teacher.model, smoke_config(teacher.train, ctx.smoke),
                                              teacher.ensemble, data)
        elif teacher.train is not None:
            config = smoke_config(teacher.train, ctx.smoke)
            result = Trainer(net, data, config, ctx.stage_dir / "teacher", seed=ctx.recipe.seed,
                             console=ctx.console, label="teacher").fit()
            info = {"best_epoch": result.best_epoch, "val_accuracy": result.best_val_accuracy,
                    **last_epoch_record(result.history), "history": result.history, "epochs": config.epochs,
                    "memory": result.memory, "numerics": result.numerics}
        else:
            info = {"val_accuracy": accuracy(net, data.val, Normalize(data.mean, data.std)), "trained": False}
        if not dist.is_main():  # under torchrun, rank 0 alone writes the artifact
            return StageResult(info=info)
        info["test_accuracy"] = split_accuracy(net, data.test, data)  # reported, never chosen on
        for member, net_m in zip(info.get("ensemble", []), getattr(net, "members", [])):
            member["test_accuracy"] = split_accuracy(net_m, data.test, data)
        artifact = write_torch_artifact(ctx, net, spec, name="teacher", role="teacher", info={})
        label = (f"{teacher.model.name} x{teacher.ensemble} ensemble" if teacher.ensemble > 1
                 else f"{spec['name']} ({layout_name(spec)})")
        ctx.log(f"teacher {label}: {artifact.info['parameters']:,} parameters, "
                f"val accuracy {info['val_accuracy']:.4f}, test accuracy {info['test_accuracy']:.4f}")
        return StageResult(artifacts=[artifact], info=info)


def _train_ensemble(ctx: StageContext, ref: ModelRef, config: TrainConfig, members: int, data: DataBundle
                    ) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """Train the ensemble's members (resumable, one folder each); its net, checkpoint spec and stage info."""
    member_spec = model_spec(ref, data)
    net, records = train_ensemble(lambda: build_net(ref, data)[0], data, config, ctx.stage_dir / "members",
                                  members=members, seed=ctx.recipe.seed, console=ctx.console)
    for record in records:
        ctx.log(f"teacher {member_name(record['seed'] - ctx.recipe.seed)} (seed {record['seed']}): val accuracy "
                f"{record['val_accuracy']:.4f}" + (" (finished earlier)" if record["reused"] else ""))
    info = {
        "val_accuracy": accuracy(net, data.val, Normalize(data.mean, data.std)), "epochs": config.epochs,
        "ensemble": [{key: record[key] for key in ("seed", "best_epoch", "val_accuracy", "seconds", "reused")}
                     for record in records],
        "seconds": round(sum(record["seconds"] for record in records), 3),
        "numerics": records[0].get("numerics"),
    }
    return net, ensemble_spec([member_spec] * members), info


def ensemble_line(info: dict[str, Any]) -> list[str]:
    """The report line of an ensemble teacher: each member's validation accuracy, the ensemble's, the cost."""
    if "ensemble" not in info:
        return []
    members = ", ".join(f"seed {m['seed']} {m['val_accuracy']:.4f}" for m in info["ensemble"])
    return [f"- `train-teacher`: ensemble of {len(info['ensemble'])} members (mean of their logits), val accuracy "
            f"{info['val_accuracy']:.4f}; members {members}; training {info['seconds']:.0f} s in all."]
