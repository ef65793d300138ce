"""Stage `report`: report.md, report.html and plots from the run directory's manifest and stage records."""

from __future__ import annotations

from typing import Any

from edgekd.config import Device, Recipe
from edgekd.pipeline.context import StageContext
from edgekd.pipeline.manifest import load_manifest, read_json
from edgekd.pipeline.stage import EVERY_EARLIER_STAGE, Stage, StageResult, register_stage
from edgekd.report import write_report


@register_stage
class Report(Stage):
    name = "report"
    order = 90
    needs = EVERY_EARLIER_STAGE
    description = "report.md / report.html with tables and plots"

    def enabled(self, recipe: Recipe, device: Device) -> bool:
        return recipe.report is not None

    def config(self, recipe: Recipe, device: Device, smoke: bool) -> dict[str, Any]:
        assert recipe.report is not None
        return recipe.report.model_dump(mode="json")

    def run(self, ctx: StageContext) -> StageResult:
        assert ctx.recipe.report is not None
        manifest = load_manifest(ctx.run_dir)
        records = {p.parent.name: r for p in ctx.run_dir.glob("*/stage.json") if (r := read_json(p)) is not None}
        files = write_report(ctx.run_dir, manifest, records, html=ctx.recipe.report.html)
        ctx.log(f"wrote {ctx.run_dir / 'report.md'}")
        return StageResult(files=files)
