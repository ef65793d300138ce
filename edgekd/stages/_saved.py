"""Latency saved per layer by each INT8 artifact of a run, for the bench stage: its per-layer profile joined with
that of the fp32 model it was quantized from, in the INT8 artifact's runtime (:mod:`edgekd.bench.saving`).

The float reference is the fp32 artifact of the same source model in the same runtime; where that profile shares
no compute node with the INT8 one (an OpenVINO IR converted from PyTorch, against an INT8 IR converted from the
ONNX graph, as ``nncf-mixed`` builds it), the fp32 ONNX artifact profiled in the INT8 artifact's runtime is tried
too; the reference whose profile meets the most INT8 compute rows is kept and named (``float_artifact``,
``float_runtime``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgekd.bench.measure import runner_settings
from edgekd.bench.profile import profile_artifact
from edgekd.bench.saving import latency_saved, matched_compute
from edgekd.pipeline.artifacts import Artifact
from edgekd.pipeline.context import StageContext
from edgekd.stages._runtime import runner_options


def float_references(artifact: Artifact, artifacts: list[Artifact]) -> list[Artifact]:
    """The fp32 artifacts of ``artifact``'s source model: the same runtime's first, then the ONNX ones."""
    source = artifact.info.get("source")
    siblings = [a for a in artifacts if a.precision == "fp32" and a.status != "failed" and a.format != "torch"
                and a.info.get("source") == source]
    return [a for a in siblings if a.runtime == artifact.runtime] + \
        [a for a in siblings if a.runtime != artifact.runtime and a.format == "onnx"]


def saved_per_layer(ctx: StageContext, artifact: Artifact, profiles: dict[str, list[dict[str, Any]]], runs: int,
                    profile: Callable[[Artifact, str], list[dict[str, Any]]] | None = None) -> dict[str, Any] | None:
    """The latency-saved record of the INT8 ``artifact`` (see the module docstring), or None where it has no
    profile or no fp32 reference. ``profiles``: the full profiles the bench stage took, by artifact name;
    ``runs``: profiled inferences of a reference taken here; ``profile(reference, runtime)`` profiles a reference
    in another runtime (default: the runtime's profiler with the device's fp32 settings)."""
    rows = profiles.get(artifact.name)
    if artifact.precision != "int8" or not rows:
        return None
    profile = profile or (lambda ref, runtime: _profile_in(ctx, ref, runtime, runs))
    best: dict[str, Any] | None = None
    for reference in float_references(artifact, ctx.artifacts):
        same = reference.runtime == artifact.runtime
        if not same and best is not None and matched_compute(best) > 0:
            break
        float_rows = profiles.get(reference.name) if same else profile(reference, artifact.runtime)
        if not float_rows:
            continue
        record = latency_saved(float_rows, rows)
        if best is None or matched_compute(record) > matched_compute(best):
            best = {"float_artifact": reference.name, "float_runtime": artifact.runtime, **record}
    return best


def _profile_in(ctx: StageContext, reference: Artifact, runtime: str, runs: int) -> list[dict[str, Any]]:
    """The full profile of the fp32 ``reference`` opened in ``runtime`` with the device's fp32 settings."""
    settings = runner_settings(runtime, runner_options(ctx.device, runtime, "fp32"))
    return profile_artifact(ctx.path(reference), runtime, settings, reference.input["shape"][1:], runs=runs)
