"""Stage `export`: build the device's full-precision artifacts from the final model, each checked against torch.

Every artifact takes raw [0, 1] pixels and carries its normalisation inside the graph. Parity check on real test
images: an artifact fails (``status: failed``, kept in the manifest with its figures; the others go on) if the largest
logit differs from torch's by more than ``export.parity_atol + export.parity_rtol * |logit|`` or its top-1 agreement
falls below ``export.min_top1_agreement`` (``fp16_*`` and ``bf16_*`` tolerances for those precisions, whose rounding
grows with the logit). Each artifact runs in the
precision it is labelled with (:mod:`edgekd.runtime.precision`); bf16 is built only where the hardware computes in it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from edgekd.capabilities import Capability, capability, runtime_libraries
from edgekd.config import Device, ExportConfig, Recipe
from edgekd.data.probe import PROBE_SPLITS
from edgekd.export.build import exporter
from edgekd.pipeline.artifacts import Artifact
from edgekd.pipeline.context import StageContext
from edgekd.pipeline.stage import ReportSection, Stage, StageResult, register_stage
from edgekd.report.sections import not_built_lines
from edgekd.runtime.hardware import unmet_requirement
from edgekd.runtime.precision import WEIGHTS
from edgekd.stages._build import build_artifact, parity_against, parity_probe
from edgekd.stages._models import deployed_model, derived_info, load_plain_net
from edgekd.stages._runtime import open_artifact


def export_plan(device: Device) -> tuple[list[Capability], dict[str, str]]:
    """The capability rows this stage builds for ``device``, and why any other pair it lists is not built here."""
    plan: list[Capability] = []
    not_here: dict[str, str] = {}
    for target in device.runtimes:
        for precision in target.precisions:
            row = capability(target.runtime, precision)
            assert row is not None, "device profiles are validated against the capability table"
            pair = f"{row.runtime}/{row.precision}"
            if row.built_by is None:
                not_here[pair] = f"{row.note}: measured as they are, nothing to export"
            elif row.built_by != "export":
                not_here[pair] = f"{row.precision} artifacts come from a {row.built_by} stage"
            elif (why := unmet_requirement(row, target.device)) is not None:
                not_here[pair] = why
            else:
                plan.append(row)
    return plan, not_here


@register_stage
class Export(Stage):
    name = "export"
    order = 50
    needs = ("train-teacher", "distill")
    description = "export the final model for each runtime of the device, with a parity check against torch"
    libraries = ("torch", "onnx", "onnxslim", *runtime_libraries())

    def enabled(self, recipe: Recipe, device: Device) -> bool:
        return recipe.export is not None

    def config(self, recipe: Recipe, device: Device, smoke: bool) -> dict[str, Any]:
        assert recipe.export is not None
        return {"export": recipe.export.model_dump(mode="json"), "parity_probe": list(PROBE_SPLITS),
                "plan": [(row.runtime, row.precision) for row in export_plan(device)[0]]}

    def plan(self, recipe: Recipe, device: Device) -> list[str]:
        built, not_built = export_plan(device)
        return [f"builds {', '.join(f'{row.runtime}/{row.precision}' for row in built) or 'nothing'}",
                *(f"not {pair}: {why}" for pair, why in not_built.items())]

    def report_sections(self, record: dict[str, Any], manifest: dict[str, Any], plots: dict[str, Path]
                        ) -> list[ReportSection]:
        """Outputs not built and why; a pair another stage builds (the capability table's ``built_by``) is left to
        that stage's own list when it ran."""
        ran = {s["name"] for s in manifest["stages"] if s["status"] in ("done", "cached")}

        def delegated(pair: str) -> bool:
            row = capability(*pair.split("/", 1))
            return row is not None and row.built_by not in (None, self.name) and row.built_by in ran

        not_built = {k: v for k, v in record["info"].get("not_built", {}).items() if not delegated(k)}
        return [ReportSection("Not built", not_built_lines(not_built))] if not_built else []

    def run(self, ctx: StageContext) -> StageResult:
        cfg = ctx.recipe.export
        assert cfg is not None
        source = deployed_model(ctx, self.name)
        net = load_plain_net(ctx, source).eval()
        plan, not_here = export_plan(ctx.device)
        with open_artifact(ctx, source) as torch_runner:
            artifacts = [_export_one(ctx, row, source, net, torch_runner, cfg) for row in plan]
        return StageResult(artifacts=artifacts, info={"source": source.name, "not_built": not_here})


def _export_one(ctx: StageContext, row: Capability, source: Artifact, net: nn.Module, reference: Any,
                cfg: ExportConfig) -> Artifact:
    """The artifact of ``row`` built from ``net`` and parity-checked against ``reference`` (the torch model); a
    failure of either is recorded on the artifact."""
    data = ctx.data()
    name = f"{source.name}-{row.format}-{row.precision}"
    out = ctx.stage_dir / name
    out.mkdir(parents=True, exist_ok=True)
    info = derived_info(source, weights=WEIGHTS[row.precision])
    record = {"name": name, "format": row.format, "precision": row.precision, "runtime": row.runtime,
              "role": source.role, "input": source.input, "info": info}
    _, builder = exporter(row.runtime, row.precision, ctx.device)
    probe = parity_probe(ctx, cfg.parity_samples)

    def summary(artifact: Artifact, parity: dict[str, Any]) -> str:
        return (f"{name}: {artifact.bytes / 1e6:.2f} MB, max |Δlogit| {parity['max_abs_diff']:.2e}, "
                f"top-1 agreement {parity['top1_agreement']:.4f}, computed in {parity['compute']}")

    return build_artifact(ctx, record, out, lambda: builder(net, data.mean, data.std, data.val.x[:1], out, cfg),
                          lambda artifact: parity_against(ctx, reference, artifact, probe, cfg),
                          built_by="export", checked_by="parity check", summary=summary)
