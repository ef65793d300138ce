"""The one build → check → record path of the stages that make artifacts (export, quantize, prune).

Each artifact is built into its own folder, recorded (:class:`~edgekd.pipeline.artifacts.Artifact`, files and
hashes), then checked against the torch model it comes from; a failure of either step is recorded on the artifact
(``status: failed`` with the reason) and the other artifacts go on. A check whose figures say ``passed: False`` (the
export parity rule of :mod:`edgekd.export.build`) fails the artifact with the rule's one-line reason. The checks
compare on the run's probe (:func:`edgekd.data.probe.probe_images`: validation images topped up with training
images, never test images), and each records which splits it used (``info.parity.probe``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekd.config import ExportConfig
from edgekd.data.probe import Probe, probe_images
from edgekd.errors import ParityError
from edgekd.export.build import parity_figures, parity_message
from edgekd.pipeline.artifacts import Artifact
from edgekd.pipeline.context import StageContext
from edgekd.stages._failures import attempt, failure, mark_failed
from edgekd.stages._runtime import open_artifact


def build_artifact(ctx: StageContext, record: dict[str, Any], out: Path, build: Callable[[], Path],
                   check: Callable[[Artifact], dict[str, Any]], *, built_by: str, checked_by: str,
                   summary: Callable[[Artifact, dict[str, Any]], str] | None = None) -> Artifact:
    """The artifact ``record`` describes, built by ``build`` inside ``out`` and checked by ``check`` (its figures
    go to ``info.parity``; ``summary`` turns them into a log line); ``built_by``/``checked_by`` name the steps in
    the log."""
    name = record["name"]
    path, failed = attempt(build, ctx.log, f"{name}: {built_by}")
    artifact = Artifact.from_file(ctx.run_dir, path or out, **record)
    if path is None:  # nothing was built: the record points at its (empty) folder
        assert failed is not None
        return mark_failed(artifact, failed)
    figures, failed = attempt(lambda: check(artifact), ctx.log, f"{name}: {checked_by}")
    if figures is not None:
        artifact.info["parity"] = figures
        if summary is not None:
            ctx.log(summary(artifact, figures))
        if figures.get("passed") is False:
            failed = failure(ParityError(parity_message(figures)))
            ctx.log(f"{name}: {failed['reason']}")
    return mark_failed(artifact, failed) if failed is not None else artifact


def parity_probe(ctx: StageContext, count: int) -> Probe:
    """The ``count`` probe images of the run's data, drawn with the recipe's seed."""
    return probe_images(ctx.data(), count, ctx.recipe.seed)


def parity_against(ctx: StageContext, reference: Any, artifact: Artifact, probe: Probe, cfg: ExportConfig
                   ) -> dict[str, Any]:
    """Parity figures of ``artifact`` (opened in its own runtime) against ``reference`` (the torch model's runner)
    on ``probe``, with the tolerances they were judged by, the splits the probe came from and the precision the
    artifact ran in."""
    candidate = open_artifact(ctx, artifact)
    try:
        parity = parity_figures(reference, candidate, probe.x, cfg, artifact.precision)
        parity["probe"] = dict(probe.splits)
        parity["compute"] = candidate.describe().get("inference_precision", "f32")
    finally:
        candidate.close()
    return parity
