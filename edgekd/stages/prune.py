"""Stage `prune`: LayerMerge depth compression of the distilled student (Kim et al., ICML 2024), with the merge-only
and layer-pruning-only baselines at the same latency budgets.

1. The student is analysed with torch.fx (:func:`edgekd.prune.analyse`) and every candidate (segment, kernel option)
   becomes a table entry, timed in context on the device's own runtime and precision (``prune.runtime``;
   :mod:`edgekd.prune.context`, cached in ``cache/latency``): the unpruned network with only that change applied,
   minus the unpruned network re-timed around it, so a plan's predicted latency is ``M + Σ Δ`` over its changes
   (``M`` the median of the unpruned network's timings during the build). Every distinct plan's merged network is then
   timed the same way, and its predicted and measured latency and their relative error are recorded.
2. Importance of every entry (and of every layer's removal, for the knapsack baseline): validation accuracy after
   applying only that change and a brief fine-tune (or the cheaper ``proxy``), ``exp(Δacc)``.
3. Per budget (a fraction of the unpruned student's measured latency, or milliseconds): the LayerMerge DP, the
   merge-only DP and the 0/1 knapsack (:mod:`edgekd.prune.dp`).
4. Each plan's pruned network is fine-tuned with KD from the unpruned student, merged (exact: its largest logit
   difference from the fine-tuned network is recorded), and written as a torch artifact whose spec names
   :func:`edgekd.prune.apply.merged_model`. The deployed budget's LayerMerge network replaces ``student``, so export,
   quantize, evaluate and bench take it unchanged; the unpruned student stays as ``student-unpruned``; every other
   result is an artifact of role ``pruned``. Those comparison models (and the unpruned one) are also exported to the
   table's runtime, so evaluate and bench measure them where the table was timed; select never picks them.

Rank 0 alone runs this stage (``distributed = False``): the latency table must be timed with the device to itself,
and the library's importance sharding (``measure_importance(rank=, world_size=)``) is not wired to torchrun here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd._atomic import atomic_write_json
from edgekd.capabilities import runtime_libraries
from edgekd.config import Device, ExportConfig, Recipe
from edgekd.config.prune import TABLE_RUNTIMES, PruneConfig
from edgekd.data import DataBundle
from edgekd.data.probe import PROBE_SPLITS
from edgekd.errors import ConfigError, UserError
from edgekd.export.build import exporter
from edgekd.models import load_checkpoint, model_from_checkpoint
from edgekd.pipeline.artifacts import Artifact
from edgekd.pipeline.context import StageContext
from edgekd.pipeline.stage import ReportSection, Stage, StageResult, register_stage
from edgekd.prune.context import MODEL as LATENCY_MODEL
from edgekd.report.prune import prune_plot, prune_section
from edgekd.report.sections import as_sections
from edgekd.runtime import Normalize
from edgekd.stages._build import build_artifact, parity_against, parity_probe
from edgekd.stages._chain import TEACHER_CACHE
from edgekd.stages._checks import as_config_error, check_losses
from edgekd.stages._models import build_net, derived_info, load_plain_net, write_torch_artifact
from edgekd.stages._prune_plans import Result, plan_all, plan_errors
from edgekd.stages._runtime import open_artifact, runner_options
from edgekd.stages._training import smoke_config

#: the factory a merged network's torch artifact names (imported by path by edgekd.models.create)
MERGED_FACTORY = "edgekd.prune.apply:merged_model"
#: latency of an entry in a smoke run: few calls
SMOKE_LATENCY = {"warmup": 1, "runs": 3, "max_seconds": 0.2}
SMOKE_IMPORTANCE_STEPS = 2


def table_runtime(cfg: PruneConfig, device: Device) -> str | None:
    """The runtime the table is timed on: ``prune.runtime``, else the device's first one the table supports."""
    if cfg.runtime is not None:
        return cfg.runtime
    return next((t.runtime for t in device.runtimes if t.runtime in TABLE_RUNTIMES), None)


def required_runtime(cfg: PruneConfig, device: Device) -> str:
    """:func:`table_runtime`, or a ConfigError naming the device's runtimes when it offers none the table supports."""
    runtime = table_runtime(cfg, device)
    if runtime is None:
        raise ConfigError("device", "runtimes", f"{device.name} offers no runtime the LayerMerge latency table is "
                          f"timed on ({', '.join(TABLE_RUNTIMES)}); add one or remove the prune section")
    return runtime


def table_batch(recipe: Recipe, cfg: PruneConfig) -> int:
    """Batch size of a timed table call: ``prune.latency.batch_size``, else the bench stage's, else 1."""
    if cfg.latency.batch_size is not None:
        return cfg.latency.batch_size
    return recipe.bench.batch_size if recipe.bench is not None else 1


def latency_settings(cfg: PruneConfig, device: Device, smoke: bool) -> Any:
    from edgekd.prune import LatencySettings

    runtime = required_runtime(cfg, device)
    timing = SMOKE_LATENCY if smoke else {"warmup": cfg.latency.warmup, "runs": cfg.latency.runs,
                                          "max_seconds": cfg.latency.max_seconds}
    return LatencySettings(device=device.name, runtime=runtime, precision=cfg.precision,
                           options=runner_options(device, runtime, cfg.precision), statistic=cfg.latency.statistic,
                           warmup=int(timing["warmup"]), runs=int(timing["runs"]),
                           max_seconds=float(timing["max_seconds"]))


def importance_settings(cfg: PruneConfig, seed: int, smoke: bool) -> Any:
    from edgekd.prune import ImportanceSettings

    imp = cfg.importance
    return ImportanceSettings(mode=imp.mode, steps=min(imp.steps, SMOKE_IMPORTANCE_STEPS) if smoke else imp.steps,
                              batch_size=imp.batch_size, lr=imp.lr, momentum=imp.momentum,
                              weight_decay=imp.weight_decay, seed=seed)


@register_stage
class Prune(Stage):
    name = "prune"
    order = 40
    needs = ("distill",)
    libraries = ("torch", "onnx", *runtime_libraries())
    description = "LayerMerge depth compression of the student under latency budgets timed on the device's runtime"

    def enabled(self, recipe: Recipe, device: Device) -> bool:
        return recipe.prune is not None

    def config(self, recipe: Recipe, device: Device, smoke: bool) -> dict[str, Any]:
        cfg = recipe.prune
        assert cfg is not None
        return {"prune": cfg.model_dump(mode="json"), "latency": asdict(latency_settings(cfg, device, smoke)),
                "importance": asdict(importance_settings(cfg, recipe.seed, smoke)),
                "latency_model": LATENCY_MODEL, "batch_size": table_batch(recipe, cfg),
                "export": (recipe.export or ExportConfig()).model_dump(mode="json"), "parity_probe": list(PROBE_SPLITS)}

    def plan(self, recipe: Recipe, device: Device) -> list[str]:
        cfg = recipe.prune
        assert cfg is not None and recipe.student is not None
        runtime = table_runtime(cfg, device)
        ft = cfg.finetune
        losses = ", ".join(f"{t.weight}×{t.name}" for t in ft.losses) or "none"
        return [(f"LayerMerge on {recipe.student.model.name} at budgets {', '.join(cfg.labels())} (fractions of "
                 f"its measured latency, or ms); baselines {', '.join(cfg.baselines) or 'none'}"),
                (f"latency table on {runtime}/{cfg.precision}, batch {table_batch(recipe, cfg)}, "
                 f"{cfg.latency.runs} runs per entry ({cfg.latency.statistic}, timed in context); "
                 f"importance {cfg.importance.mode}, "
                 f"{cfg.importance.steps} steps per entry"),
                f"fine-tune {ft.train.epochs} epochs, loss {ft.ce_weight}×CE + {losses} from the unpruned student",
                f"LayerMerge at {cfg.deploy_label()} replaces `student`; the unpruned one stays as `student-unpruned`"]

    def check(self, recipe: Recipe, device: Device, data: Callable[[], DataBundle]) -> None:
        from edgekd.prune import analyse, candidate_options

        cfg = recipe.prune
        assert cfg is not None and recipe.student is not None
        runtime = required_runtime(cfg, device)
        target = device.runtime(runtime)
        if target is None:
            raise ConfigError("recipe", "prune.runtime", f"{runtime!r} is not a runtime of device {device.name} "
                              f"({', '.join(t.runtime for t in device.runtimes)})")
        if cfg.precision not in target.precisions:
            raise ConfigError("recipe", "prune.precision", f"{device.name} runs {runtime} in "
                              f"{', '.join(target.precisions)}, not {cfg.precision}")
        as_config_error("recipe", "prune.precision", lambda: latency_settings(cfg, device, False).runner_options())
        check_losses(cfg.finetune.losses, "prune.finetune.losses",
                     logit_only="the pruned network is distilled from the unpruned student's logits")
        bundle = data()
        student = recipe.student
        assert student is not None  # the recipe schema requires a student with a prune section
        net = as_config_error("recipe", "student.model", lambda: build_net(student.model, bundle)[0])
        example = torch.zeros(1, *bundle.test.x.shape[1:])
        chain = as_config_error("recipe", "student.model", lambda: analyse(net, example))
        if not candidate_options(chain, max_kernel=cfg.max_kernel):
            raise ConfigError("recipe", "prune.max_kernel", f"leaves no candidate segment in {student.model.name}")

    def report_plots(self, record: dict[str, Any], manifest: dict[str, Any], folder: Path) -> dict[str, Path]:
        return prune_plot(manifest, {self.name: record}, folder)

    def report_sections(self, record: dict[str, Any], manifest: dict[str, Any], plots: dict[str, Path]
                        ) -> list[ReportSection]:
        return as_sections(prune_section(manifest, {self.name: record}, plots))

    def run(self, ctx: StageContext) -> StageResult:
        cfg = ctx.recipe.prune
        assert cfg is not None
        source = ctx.artifact("student")
        if source is None:
            raise UserError("prune: needs the distilled student (a student and a distill section)")
        data = ctx.data()
        payload = load_checkpoint(ctx.path(source))
        spec = payload["spec"]
        net = model_from_checkpoint(payload).eval()
        seconds: dict[str, float] = {}
        start = time.perf_counter()
        tables = measure_tables(ctx, cfg, net)
        seconds["latency_and_importance"] = round(time.perf_counter() - start, 3)
        results, infeasible = plan_all(cfg, tables, smoke=ctx.smoke)
        start = time.perf_counter()
        errors = plan_errors(ctx, tables, results)
        seconds["plan_latency"] = round(time.perf_counter() - start, 3)
        deploy = cfg.deploy_label()
        if not any(r.method == "layermerge" and r.budget == deploy for r in results):
            raise UserError(f"prune.deploy {deploy}: " + infeasible.get(f"layermerge-{deploy}", "no LayerMerge plan"))
        runtime, precision = tables.settings.runtime, tables.settings.precision
        fmt = exporter(runtime, precision, ctx.device)[0]
        export_cfg = ctx.recipe.export or ExportConfig()
        artifacts = [write_torch_artifact(ctx, net, spec, name="student-unpruned", role="unpruned",
                                          info={"source": source.name})]
        artifacts.append(runtime_artifact(ctx, artifacts[0], net, runtime, precision, export_cfg))
        start = time.perf_counter()
        trained: dict[str, tuple[nn.Module, dict[str, Any]]] = {}
        records = []
        for result in results:
            deployed = result.method == "layermerge" and result.budget == deploy
            name = "student" if deployed else f"student-{result.method}-{result.budget}"
            key = str(result.plan.to_json())
            if key not in trained:
                trained[key] = finetune(ctx, cfg, tables.chain, result, net)
            pruned, epochs = trained[key]
            val_accuracy = epochs["val_accuracy"]
            merged, diff = merge(tables.chain, result, pruned, data)
            merged_spec = {"name": MERGED_FACTORY, "kwargs": {"base": spec, "plan": result.plan.to_json(),
                                                              "input_shape": list(data.test.x.shape[1:])}}
            error = errors[key]
            record = {**result.describe(tables.chain), **epochs, "merge_max_abs_diff": diff,
                      "measured_ms": error["measured_ms"], "reference_ms": error["reference_ms"],
                      "relative_error": error["relative_error"],
                      "drift_corrected_error": error["drift_corrected_error"], "error_cause": error["cause"],
                      "artifact": name, "measured_artifact": f"{name}-{fmt}-{precision}"}
            artifact = write_torch_artifact(ctx, merged, merged_spec, name=name, role="student" if deployed
                                            else "pruned", info={"prune": record, "unpruned": "student-unpruned"})
            check_round_trip(ctx, artifact, merged, data)
            artifacts.append(artifact)
            if not deployed:  # the deployed one is exported (and checked) by the export stage
                artifacts.append(runtime_artifact(ctx, artifact, merged, runtime, precision, export_cfg))
            ctx.log(f"{name}: {result.method} at {result.budget}, predicted {record['predicted_ms']:.4f} ms, measured "
                    f"{record['measured_ms']:.4f} ms ({100 * record['relative_error']:+.1f} %), "
                    f"{len(record['kept_convs'])}/{tables.chain.depth} convs kept in {record['merged_depth']} "
                    f"merged layers, val accuracy {val_accuracy:.4f}, merge |Δlogit| {diff:.1e}")
            records.append(record)
        seconds["finetune_and_merge"] = round(time.perf_counter() - start, 3)
        info = {**tables.describe(), "deployed": deploy, "results": records, "infeasible": infeasible,
                "unpruned_measured_artifact": f"student-unpruned-{fmt}-{precision}", "seconds": seconds}
        atomic_write_json(ctx.stage_dir / "prune.json", info)
        return StageResult(artifacts=artifacts, info=info)


def measure_tables(ctx: StageContext, cfg: PruneConfig, net: nn.Module) -> Any:
    """The latency and importance tables of ``net`` (measured once per attempt: a resumed stage reuses them)."""
    from edgekd.stages._prune_plans import measure

    return measure(ctx, cfg, net, latency_settings(cfg, ctx.device, ctx.smoke),
                   importance_settings(cfg, ctx.recipe.seed, ctx.smoke), table_batch(ctx.recipe, cfg))


def finetune(ctx: StageContext, cfg: PruneConfig, chain: Any, result: Result, teacher: nn.Module
             ) -> tuple[nn.Module, dict[str, Any]]:
    """The pruned network of ``result``, fine-tuned with KD from the unpruned student; with its best-epoch and
    last-epoch validation accuracy (``val_accuracy`` is the best one, whose weights are kept)."""
    from edgekd.distill.losses import create
    from edgekd.distill.trainer import DistillTerm, Trainer, last_epoch_record
    from edgekd.prune import build_pruned

    ft = cfg.finetune
    terms = [DistillTerm(t.weight, create(t.name, **t.params), "logit") for t in ft.losses]
    pruned = build_pruned(chain, result.plan)
    trained = Trainer(pruned, ctx.data(), smoke_config(ft.train, ctx.smoke),
                      ctx.stage_dir / f"{result.method}-{result.budget}", seed=ctx.recipe.seed, teacher=teacher,
                      terms=terms, ce_weight=ft.ce_weight, console=ctx.console,
                      label=f"{result.method} {result.budget}", teacher_cache_dir=ctx.run_dir / TEACHER_CACHE).fit()
    return pruned.cpu().eval(), {"val_accuracy": trained.best_val_accuracy, "best_epoch": trained.best_epoch,
                                 **last_epoch_record(trained.history)}


def merge(chain: Any, result: Result, pruned: nn.Module, data: DataBundle) -> tuple[nn.Module, float]:
    """The merged network and its largest |logit difference| from the fine-tuned pruned one on validation images."""
    from edgekd.prune import build_merged

    merged = build_merged(chain, result.plan, pruned).eval()
    x = Normalize(data.mean, data.std)(data.val.x[:256])
    with torch.no_grad():
        diff = float((merged(x) - pruned(x)).abs().max())
    return merged, diff


def check_round_trip(ctx: StageContext, artifact: Artifact, merged: nn.Module, data: DataBundle) -> None:
    """The artifact rebuilds (spec → merged structure → weights) into the network that was saved."""
    x = Normalize(data.mean, data.std)(data.val.x[:8])
    with torch.no_grad():
        same = torch.equal(load_plain_net(ctx, artifact).eval()(x), merged(x))
    if not same:
        raise RuntimeError(f"{artifact.name}: the stored merged network does not rebuild to the saved one")


def runtime_artifact(ctx: StageContext, source: Artifact, net: nn.Module, runtime: str, precision: str,
                     cfg: ExportConfig) -> Artifact:
    """``source`` exported to the table's runtime (so bench times it where the table was timed), parity-checked
    against torch like the export stage's artifacts; a failure is recorded on the artifact."""
    data = ctx.data()
    fmt, builder = exporter(runtime, precision, ctx.device)
    name = f"{source.name}-{fmt}-{precision}"
    out = ctx.stage_dir / name
    out.mkdir(parents=True, exist_ok=True)
    record = {"name": name, "format": fmt, "precision": precision, "runtime": runtime, "role": source.role,
              "input": source.input, "info": derived_info(source)}
    probe = parity_probe(ctx, cfg.parity_samples)

    def check(artifact: Artifact) -> dict[str, Any]:
        with open_artifact(ctx, source) as reference:
            return parity_against(ctx, reference, artifact, probe, cfg)

    return build_artifact(ctx, record, out, lambda: builder(net, data.mean, data.std, data.val.x[:1], out, cfg),
                          check, built_by="export", checked_by="parity check")

