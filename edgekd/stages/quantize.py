"""Stage `quantize`: INT8 artifacts for every runtime of the device that lists `int8`.

Built from the export stage's fp32 artifacts with the libraries made for it (Jacob et al., CVPR 2018 integer
quantization: ``x_q = clamp(round(x / s) + z)``):

- ONNX Runtime targets: ONNX Runtime static QDQ quantization (``ort``) and NNCF PTQ on the ONNX model (``nncf``);
- OpenVINO targets: NNCF PTQ on the IR, and optionally NNCF accuracy-controlled PTQ (``accuracy_control``);
- both: QAT+KD (``qat``): NNCF fake-quantizers on the torch student, fine-tuned with distillation from the fp32
  student (or the teacher), exported to a plain QDQ ONNX graph and to an INT8 IR.

Calibration images come from the train split. Each artifact records its top-1 agreement with the torch model on the
parity probe (validation images topped up with train images, :mod:`edgekd.data.probe`); an INT8 artifact below the
device's accuracy floor is kept and marked by `select`, never selected.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekd.capabilities import FORMAT_SUFFIXES, RUNTIME_SPECS, NncfTarget, capability, runtime_libraries
from edgekd.config import Device, Recipe
from edgekd.config.quantize import QuantizeConfig
from edgekd.data import DataBundle
from edgekd.data.probe import PROBE_SPLITS, Probe
from edgekd.errors import ConfigError, UserError
from edgekd.pipeline.artifacts import Artifact
from edgekd.pipeline.context import StageContext
from edgekd.pipeline.stage import ReportSection, Stage, StageResult, register_stage
from edgekd.quantize.jobs import Int8Build, Int8Job
from edgekd.report.sections import mixed_precision_lines, not_built_lines, quantization_section
from edgekd.runtime.hardware import unmet_requirement
from edgekd.runtimes import has_part, runtime_part
from edgekd.stages._build import build_artifact, parity_probe
from edgekd.stages._checks import check_losses
from edgekd.stages._models import deployed_model, derived_info, load_plain_net
from edgekd.stages._runtime import open_artifact, runner_options

#: smoke runs calibrate on this many images
SMOKE_CALIBRATION = 32

MIXED_ENGINES = frozenset({"ort-mixed", "nncf-mixed", "aiq-mixed", "trt-mixed"})
"""The engines that read ``quantize.mixed``."""


def int8_runtimes(device: Device) -> list[str]:
    """Runtimes of the device that ask for INT8 artifacts."""
    return [t.runtime for t in device.runtimes if "int8" in t.precisions]


def nncf_target(device: Device, runtime: str) -> NncfTarget:
    """The NNCF ``target_device`` for INT8 artifacts of ``runtime`` on ``device``: its hardware config follows the
    device kind the profile names (an OpenVINO GPU or NPU profile quantizes for that device, not for the CPU)."""
    target = device.runtime(runtime)
    assert target is not None
    return RUNTIME_SPECS[runtime].quantize_targets.get(target.kind, "ANY")


def unmet(device: Device) -> dict[str, str]:
    """``runtime/int8`` → why this host cannot build the INT8 artifacts the device asks for (its hardware
    requirement in the capability table)."""
    reasons = {}
    for target in device.runtimes:
        row = capability(target.runtime, "int8")
        if "int8" in target.precisions and row is not None and (why := unmet_requirement(row, target.device)):
            reasons[f"{target.runtime}/int8"] = why
    return reasons


def symmetric_activations(device: Device) -> bool:
    """ONNX Runtime's activations are quantized symmetrically when the device also runs a runtime whose INT8
    artifacts need it (``symmetric_int8`` in its spec, e.g. TensorRT)."""
    return any(RUNTIME_SPECS[t.runtime].symmetric_int8 for t in device.runtimes)


def accuracy_controlled(device: Device) -> list[str]:
    """The INT8 runtimes of the device with an accuracy-controlled engine (``nncf_ac`` among their row's methods)."""
    return [r for r in int8_runtimes(device) if (row := capability(r, "int8")) and "nncf_ac" in row.methods]


def calibration_images(ctx: StageContext, count: int) -> np.ndarray:
    """``count`` train images in a seeded random order (never validation or test)."""
    train = ctx.data().train
    generator = torch.Generator().manual_seed(ctx.recipe.seed)
    index = torch.randperm(len(train), generator=generator)[:count]
    return train.x[index].numpy()


@register_stage
class Quantize(Stage):
    name = "quantize"
    order = 55
    needs = ("train-teacher", "distill", "export")
    description = "INT8 artifacts: ONNX Runtime and NNCF post-training quantization, QAT with distillation"
    libraries = ("torch", "onnx", "nncf", "torchao", *runtime_libraries())

    def enabled(self, recipe: Recipe, device: Device) -> bool:
        return recipe.quantize is not None and bool(int8_runtimes(device))

    def config(self, recipe: Recipe, device: Device, smoke: bool) -> dict[str, Any]:
        assert recipe.quantize is not None
        settings = recipe.quantize.model_dump(mode="json")
        if not MIXED_ENGINES & set(recipe.quantize.engines):  # read by the mixed-precision engines only
            del settings["mixed"]
        return {"quantize": settings, "runtimes": int8_runtimes(device),
                "ort_activations": "qint8-symmetric" if symmetric_activations(device) else "quint8",
                "nncf_target": {r: nncf_target(device, r) for r in int8_runtimes(device)},
                "calibration": SMOKE_CALIBRATION if smoke else recipe.quantize.calibration_samples,
                "parity_probe": list(PROBE_SPLITS)}

    def plan(self, recipe: Recipe, device: Device) -> list[str]:
        assert recipe.quantize is not None
        not_here = unmet(device)
        runtimes = [r for r in int8_runtimes(device) if f"{r}/int8" not in not_here]
        lines = [f"INT8 for {', '.join(runtimes) or 'no runtime'}: PTQ engines "
                 f"{', '.join(recipe.quantize.engines)}" + (", accuracy control" if recipe.quantize.accuracy_control
                                                            else "") + (", QAT+KD" if recipe.quantize.qat else "")]
        return lines + [f"not {pair}: {why}" for pair, why in not_here.items()]

    def check(self, recipe: Recipe, device: Device, data: Callable[[], DataBundle]) -> None:
        cfg = recipe.quantize
        assert cfg is not None
        if cfg.qat is not None:
            check_losses(cfg.qat.losses, "quantize.qat.losses", logit_only="QAT distils logits only (the "
                         "fake-quantized graph is not tapped)")
            if cfg.qat.teacher == "teacher" and recipe.teacher is None:
                raise ConfigError("recipe", "quantize.qat.teacher", "'teacher' needs a teacher section in the recipe "
                                  "(or distil from the fp32 student: 'student')")
        ac = cfg.accuracy_control
        if ac is not None and ac.max_drop is None and accuracy_controlled(device) \
                and device.budgets.min_accuracy is None:
            raise ConfigError("device", "budgets.min_accuracy", "quantize.accuracy_control.max_drop is null, so the "
                              "allowed drop comes from the device's accuracy floor, which this profile does not set")

    def report_sections(self, record: dict[str, Any], manifest: dict[str, Any], plots: dict[str, Path]
                        ) -> list[ReportSection]:
        sections = [ReportSection("Quantization", lines)] if (lines := quantization_section(manifest)) else []
        sections += [ReportSection(f"Mixed precision: {art['name']}", mixed_precision_lines(art))
                     for art in manifest["artifacts"] if "mixed" in art["info"]]
        if not_built := record["info"].get("not_built", {}):
            sections.append(ReportSection("Not built", not_built_lines(not_built)))
        return sections

    def run(self, ctx: StageContext) -> StageResult:
        cfg = ctx.recipe.quantize
        assert cfg is not None
        source = deployed_model(ctx, self.name)
        count = SMOKE_CALIBRATION if ctx.smoke else cfg.calibration_samples
        calibration = calibration_images(ctx, count)
        builders, not_built = self._plan(ctx, cfg, source, calibration)
        probe = parity_probe(ctx, cfg.parity_samples)
        artifacts: list[Artifact] = []
        for entry in builders:
            name, out_dir = entry.name, ctx.stage_dir / entry.name
            out_dir.mkdir(parents=True, exist_ok=True)
            info = derived_info(source, method=name.split("-int8-")[1], weights="int8")
            record = {"name": name, "format": entry.format, "precision": "int8", "runtime": entry.runtime,
                      "role": source.role, "input": source.input, "info": info}
            artifact = build_artifact(
                ctx, record, out_dir, lambda: _built(entry, out_dir, info),
                lambda artifact: _agreement(ctx, source, artifact, probe), built_by="quantization",
                checked_by="agreement check",
                summary=lambda artifact, parity: (f"{artifact.name}: {artifact.bytes / 1e6:.3f} MB, top-1 agreement "
                                                  f"with torch {parity['top1_agreement']:.4f}"))
            if (why := fold_twin(entry, artifact, artifacts)) is not None:
                not_built[name] = why
                ctx.log(f"{name}: {why}")
                shutil.rmtree(out_dir, ignore_errors=True)
                continue
            artifacts.append(artifact)
        return StageResult(artifacts=artifacts, info={"calibration_samples": len(calibration),
                                                      "built": [a.name for a in artifacts if a.status == "ok"],
                                                      "failed": [a.name for a in artifacts if a.status == "failed"],
                                                      "not_built": not_built})

    def _plan(self, ctx: StageContext, cfg: QuantizeConfig, source: Artifact, calibration: np.ndarray
              ) -> tuple[list[Int8Build], dict[str, str]]:
        """Every INT8 artifact the device and recipe ask for, from each runtime package's ``quantize`` module
        (post-training engines first, then the QAT+KD exports), and why any other is not built."""
        data = ctx.data()
        reasons = unmet(ctx.device)
        trained: dict[str, nn.Module] = {}
        shared: dict[Any, Any] = {}  # one for every runtime's job: results computed once per stage

        def qat_model() -> nn.Module:
            assert cfg.qat is not None
            if "q" not in trained:  # trained once, on first use, for every runtime's export
                from edgekd.stages._qat import train_qat

                trained["q"] = train_qat(ctx, cfg.qat, source, calibration)
            return trained["q"]

        def job_of(runtime: str) -> Int8Job:
            return Int8Job(runtime=runtime, device=ctx.device.device_of(runtime), stem=source.name, cfg=cfg,
                           calibration=calibration,
                           nncf_target=nncf_target(ctx.device, runtime),
                           symmetric_activations=symmetric_activations(ctx.device),
                           unmet=reasons.get(f"{runtime}/int8"),
                           fp32=lambda fmt: self._fp32(ctx, source, fmt, runtime),
                           val=lambda: (data.val.x.numpy(), data.val.y.numpy()),
                           max_drop=lambda path: allowed_drop(ctx, cfg, path, runtime),
                           qat_model=qat_model, mean=data.mean, std=data.std, example=data.val.x[:1],
                           shared=shared)

        jobs = [job_of(runtime) for runtime in int8_runtimes(ctx.device) if has_part(runtime, "quantize")]
        plan: list[Int8Build] = []
        not_built: dict[str, str] = {}
        for part in ("plan", *(("qat_plan",) if cfg.qat is not None else ())):
            for job in jobs:
                builds, why_not = getattr(runtime_part(job.runtime, "quantize"), part)(job)
                plan += builds
                not_built.update(why_not)
        return plan, not_built

    def _fp32(self, ctx: StageContext, source: Artifact, fmt: str, runtime: str) -> Path:
        """The export stage's fp32 artifact of ``fmt``, or an intermediate one made here if the device has none (an
        ONNX graph, or the runtime package's ``quantize.fp32_intermediate``)."""
        exported = ctx.artifact(f"{source.name}-{fmt}-fp32")
        if exported is not None and exported.status == "ok":  # a failed export is not quantized
            return ctx.path(exported)
        folder = ctx.stage_dir / "fp32"
        existing = [p for p in (folder.glob("model.*") if folder.is_dir() else []) if FORMAT_SUFFIXES.get(p.suffix)
                    == fmt]
        if existing:
            return existing[0]
        data = ctx.data()
        net = load_plain_net(ctx, source).eval()
        folder.mkdir(parents=True, exist_ok=True)
        if fmt == "onnx":
            from edgekd.export.onnx import export_onnx

            return export_onnx(net, data.mean, data.std, data.val.x[:1], folder / "model.onnx")
        path: Path = runtime_part(runtime, "quantize").fp32_intermediate(net, data.mean, data.std, data.val.x[:1],
                                                                          folder)
        return path


def allowed_drop(ctx: StageContext, cfg: QuantizeConfig, fp32_path: Path, runtime: str) -> float:
    """The recipe's ``max_drop``, or (when null) the room between the fp32 model's validation accuracy (in
    ``runtime``) and the device's accuracy floor."""
    assert cfg.accuracy_control is not None
    max_drop = cfg.accuracy_control.max_drop
    if max_drop is not None:
        return max_drop
    floor = ctx.device.budgets.min_accuracy
    if floor is None:
        raise UserError(f"quantize.accuracy_control.max_drop is null, so device {ctx.device.name} needs "
                        "budgets.min_accuracy")
    from edgekd.runtime import evaluate_accuracy, open_runner

    val = ctx.data().val
    with open_runner(runtime, fp32_path, **runner_options(ctx.device, runtime, "fp32")) as runner:
        fp32 = evaluate_accuracy(runner, val.x, val.y.numpy(), batch_size=256)
    if fp32 <= floor:
        raise UserError(f"quantize.accuracy_control: the fp32 model's validation accuracy {fp32:.4f} is already at or "
                        f"below the device's floor {floor}; set max_drop explicitly")
    ctx.log(f"accuracy control: max drop {fp32 - floor:.4f} = fp32 validation accuracy {fp32:.4f} - floor {floor}")
    return fp32 - floor


def fold_twin(entry: Int8Build, artifact: Artifact, built: list[Artifact]) -> str | None:
    """Why ``artifact`` is dropped as the same graph as its ``entry.twin`` (built earlier, in ``built``): it kept
    no node in float (``info.mixed.k == 0``); its choice moves to the twin's ``info.mixed`` (with ``engine`` naming
    the method that chose), so the ranking is kept. None: keep it."""
    twin = next((a for a in built if a.name == entry.twin and a.status == "ok"), None)
    mixed = artifact.info.get("mixed")
    if twin is None or artifact.status != "ok" or not mixed or mixed["k"] != 0:
        return None
    twin.info["mixed"] = {**mixed, "engine": artifact.info["method"]}
    return (f"kept no node in float (k = 0): the same graph as {twin.name}, not built twice; its ranking is "
            f"{twin.name}'s info.mixed")


def _built(entry: Int8Build, out_dir: Path, info: dict[str, Any]) -> Path:
    """``entry`` built inside ``out_dir``, with what its builder chose added to the artifact's ``info``."""
    path = entry.build(out_dir)
    info.update(entry.info or {})
    return path


def _agreement(ctx: StageContext, source: Artifact, artifact: Artifact, probe: Probe) -> dict[str, Any]:
    """Top-1 agreement and largest logit difference of an INT8 artifact vs the torch model ``source`` on ``probe``
    (recorded, not enforced), with the splits the probe came from."""
    from edgekd.export.onnx import check_parity

    with open_artifact(ctx, source) as reference, open_artifact(ctx, artifact) as candidate:
        parity = check_parity(reference, candidate, probe.x, atol=float("inf"), min_top1_agreement=0.0)
        compute = candidate.describe().get("inference_precision")
    return {"top1_agreement": parity["top1_agreement"], "max_abs_diff": parity["max_abs_diff"], "compute": compute,
            "samples": len(probe.x), "probe": dict(probe.splits)}
