"""Stage `export`: build the device's full-precision artifacts from the final model, each checked against torch.

Every artifact takes raw [0, 1] pixels and carries its normalisation inside the graph. Parity check on real test
images: an artifact fails (``status: failed``, kept in the manifest with its figures; the others go on) if the largest
logit differs from torch's by more than ``export.parity_atol + export.parity_rtol * |logit|`` or its top-1 agreement
falls below ``export.min_top1_agreement`` (``fp16_*`` and ``bf16_*`` tolerances for those precisions, whose rounding
grows with the logit). Each artifact runs in the
precision it is labelled with (:mod:`edgekd.runtime.precision`); bf16 is built only where the hardware computes in it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from edgekd.capabilities import Capability, capability
from edgekd.config import Device, ExportConfig, Recipe
from edgekd.errors import ParityError
from edgekd.pipeline.artifacts import Artifact
from edgekd.pipeline.context import StageContext
from edgekd.pipeline.stage import ReportSection, Stage, StageResult, register_stage
from edgekd.report.sections import not_built_lines
from edgekd.runtime.hardware import unmet_requirement
from edgekd.runtime.precision import WEIGHTS
from edgekd.stages._failures import attempt, failure, mark_failed
from edgekd.stages._models import deployed_model, derived_info, load_plain_net
from edgekd.stages._runtime import open_artifact, tensorrt_device

Builder = Callable[[nn.Module, tuple[float, ...], tuple[float, ...], torch.Tensor, Path, ExportConfig], Path]


def _onnx_fp32(net: nn.Module, mean: Any, std: Any, example: torch.Tensor, out: Path, cfg: ExportConfig) -> Path:
    from edgekd.export.onnx import export_onnx, simplify_onnx

    path = export_onnx(net, mean, std, example, out / "model.onnx", opset=cfg.opset, dynamic_batch=cfg.dynamic_batch)
    return simplify_onnx(path) if cfg.simplify else path


def _openvino(compress_to_fp16: bool) -> Builder:
    def build(net: nn.Module, mean: Any, std: Any, example: torch.Tensor, out: Path, cfg: ExportConfig) -> Path:
        from edgekd.export.openvino import export_openvino

        return export_openvino(net, out / "model.xml", compress_to_fp16=compress_to_fp16, mean=mean, std=std,
                               example=example, dynamic_batch=cfg.dynamic_batch)

    return build


def _tensorrt(precision: str, device: str) -> Builder:
    def build(net: nn.Module, mean: Any, std: Any, example: torch.Tensor, out: Path, cfg: ExportConfig) -> Path:
        from edgekd.export.tensorrt import build_engine

        onnx_path = _onnx_fp32(net, mean, std, example, out, cfg)
        return build_engine(onnx_path, out / "model.engine", precision=precision,  # type: ignore[arg-type]
                            timing_cache=out.parent / "tensorrt-timing.cache", device=device)

    return build


#: exporter (a ``methods`` name of the capability table's export rows) → builder. The OpenVINO IR of fp32 and bf16
#: artifacts is the same (fp32 weights; the runner computes bf16 artifacts in bf16); ``openvino-fp16`` stores fp16
#: weights (computed in fp16 where the device can, else in f32: see edgekd.runtime.precision).
BUILDERS: dict[str, Builder] = {
    "onnx": _onnx_fp32,
    "openvino": _openvino(compress_to_fp16=False),
    "openvino-fp16": _openvino(compress_to_fp16=True),
}


def _builder(row: Capability, device: Device) -> Builder:
    """The builder of an export row; TensorRT engines are built for the row's precision on the profile's device."""
    (method,) = row.methods
    return _tensorrt(row.precision, tensorrt_device(device)) if method == "tensorrt" else BUILDERS[method]


def exporter(runtime: str, precision: str, device: Device) -> tuple[str, Builder]:
    """(artifact format, builder) of the full-precision ``runtime``/``precision`` artifact for the profile
    ``device`` (a KeyError for a pair the capability table does not export)."""
    row = capability(runtime, precision)
    if row is None or row.built_by != "export":
        raise KeyError(f"{runtime}/{precision} is not built by the export stage")
    return row.format, _builder(row, device)


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
    libraries = ("torch", "onnx", "onnxruntime", "openvino", "onnxslim", "tensorrt")

    def enabled(self, recipe: Recipe, device: Device) -> bool:
        return recipe.export is not None

    def config(self, recipe: Recipe, device: Device, smoke: bool) -> dict[str, Any]:
        assert recipe.export is not None
        return {"export": recipe.export.model_dump(mode="json"),
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
    builder = _builder(row, ctx.device)
    path, failed = attempt(lambda: builder(net, data.mean, data.std, data.val.x[:1], out, cfg), ctx.log,
                           f"{name}: export")
    if path is None:  # nothing was built: the record points at its (empty) folder
        assert failed is not None
        return mark_failed(Artifact.from_file(ctx.run_dir, out, **record), failed)
    artifact = Artifact.from_file(ctx.run_dir, path, **record)
    probe = data.test.x[: cfg.parity_samples].numpy()
    parity, failed = attempt(lambda: _parity(ctx, reference, artifact, probe, cfg), ctx.log, f"{name}: parity check")
    if parity is not None:
        artifact.info["parity"] = parity
        ctx.log(f"{name}: {artifact.bytes / 1e6:.2f} MB, max |Δlogit| {parity['max_abs_diff']:.2e}, "
                f"top-1 agreement {parity['top1_agreement']:.4f}, computed in {parity['compute']}")
        if not parity["passed"]:
            failed = failure(ParityError(parity_message(parity)))
            ctx.log(f"{name}: {failed['reason']}")
    return mark_failed(artifact, failed) if failed is not None else artifact


class ParityTolerance(NamedTuple):
    """An artifact passes its parity check when every logit is within ``atol + rtol * |torch logit|`` and its top-1
    agreement with torch is at least ``min_top1_agreement``."""

    atol: float
    rtol: float
    min_top1_agreement: float


def parity_tolerance(cfg: ExportConfig, precision: str) -> ParityTolerance:
    """The tolerance for an artifact of ``precision``. Reduced precisions round relative to the value (unit roundoff
    2^-11 for fp16, 2^-8 for bf16), so their bound grows with the logit."""
    if precision == "fp16":
        return ParityTolerance(cfg.fp16_parity_atol, cfg.fp16_parity_rtol, cfg.fp16_min_top1_agreement)
    if precision == "bf16":
        return ParityTolerance(cfg.bf16_parity_atol, cfg.bf16_parity_rtol, cfg.bf16_min_top1_agreement)
    return ParityTolerance(cfg.parity_atol, cfg.parity_rtol, cfg.min_top1_agreement)


def parity_figures(reference: Any, candidate: Any, x: np.ndarray, cfg: ExportConfig, precision: str
                   ) -> dict[str, Any]:
    """Parity figures of the ``candidate`` runner against ``reference`` on ``x``, with the tolerance they were judged
    by."""
    from edgekd.export.onnx import check_parity

    tolerance = parity_tolerance(cfg, precision)
    parity: dict[str, Any] = dict(check_parity(reference, candidate, x, atol=tolerance.atol, rtol=tolerance.rtol,
                                               min_top1_agreement=tolerance.min_top1_agreement))
    parity.update(tolerance._asdict(), samples=len(x))
    return parity


def _parity(ctx: StageContext, reference: Any, artifact: Artifact, x: np.ndarray, cfg: ExportConfig
            ) -> dict[str, Any]:
    """Parity figures of ``artifact`` against the torch model, with the tolerances and the precision it ran in."""
    candidate = open_artifact(ctx, artifact)
    try:
        parity = parity_figures(reference, candidate, x, cfg, artifact.precision)
        parity["compute"] = candidate.describe().get("inference_precision", "f32")
    finally:
        candidate.close()
    return parity


def parity_message(parity: dict[str, Any]) -> str:
    """The one line that says why an artifact failed its parity check."""
    allowed = f"{parity['atol']} + {parity['rtol']}·|logit|" if parity.get("rtol") else f"{parity['atol']}"
    return (f"parity check failed against torch on {parity['samples']} test images: max |Δlogit| "
            f"{parity['max_abs_diff']:.3g} (allowed {allowed}), top-1 agreement "
            f"{parity['top1_agreement']:.4f} (needed {parity['min_top1_agreement']})")
