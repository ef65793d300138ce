"""Stage `report`: report.md, report.html and plots from the run directory's manifest and stage records.

With `report.baseline` the report also shows the CI gate's table against that baseline (default tolerances).
"""

from __future__ import annotations

from typing import Any

from edgekd.bench.gate import Tolerances, compare, gate_rows, load_baseline
from edgekd.config import Device, Recipe
from edgekd.pipeline.context import StageContext
from edgekd.pipeline.hashing import sha256_file
from edgekd.pipeline.manifest import load_manifest
from edgekd.pipeline.stage import EVERY_EARLIER_STAGE, Stage, StageResult, ordered_stages, register_stage
from edgekd.report import write_report


@register_stage
class Report(Stage):
    name = "report"
    order = 90
    needs = EVERY_EARLIER_STAGE
    description = "report.md / report.html with tables and plots"
    libraries = ("matplotlib",)

    def enabled(self, recipe: Recipe, device: Device) -> bool:
        return recipe.report is not None

    def config(self, recipe: Recipe, device: Device, smoke: bool) -> dict[str, Any]:
        assert recipe.report is not None
        baseline = recipe.report.baseline
        digest = sha256_file(baseline) if baseline is not None and baseline.is_file() else None
        return {**recipe.report.model_dump(mode="json"), "baseline_sha256": digest,
                "budgets": device.budgets.model_dump(mode="json")}

    def run(self, ctx: StageContext) -> StageResult:
        cfg = ctx.recipe.report
        assert cfg is not None
        records, _ = ctx.records(), ctx.artifacts  # the report reads everything before it
        manifest = load_manifest(ctx.run_dir)
        gate = None
        if cfg.baseline is not None:
            result = compare(load_baseline(cfg.baseline), manifest, Tolerances(), source=str(cfg.baseline))
            gate = {"baseline": str(cfg.baseline), "summary": result.summary(), "rows": gate_rows(result)}
            ctx.log(result.summary())
        files = write_report(ctx.run_dir, manifest, records, html=cfg.html, gate=gate, stages=ordered_stages())
        ctx.log(f"wrote {ctx.run_dir / 'report.md'}")
        return StageResult(files=files)
