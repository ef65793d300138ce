"""The report asks the run's stages for their sections and plots; it names no stage itself. Stages load from their
entry points, and `edgekd.config` loads nothing above it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgekd.config import Device, Recipe
from edgekd.pipeline.context import StageContext
from edgekd.pipeline.stage import STAGES, ReportSection, Stage, StageResult, load_stages
from edgekd.report.build import build_markdown
from tests.conftest import ROOT

MANIFEST: dict[str, Any] = {
    "recipe": "r", "device": "d", "edgekd_version": "0", "created": "now", "seed": 0, "smoke": False,
    "budgets": {}, "selected": None, "artifacts": [], "stages": [],
    "provenance": {"libraries": {}, "host": {"platform": "p", "cpu_count": 1, "python": "3"}, "git_commit": None},
}


class _Fake(Stage):
    """A stage that reports its record's ``info["lines"]`` under ``info["title"]``."""

    order = 0

    def __init__(self, name: str, summary: bool = False) -> None:
        self.name, self.summary = name, summary  # type: ignore[misc]

    def enabled(self, recipe: Recipe, device: Device) -> bool:
        return True

    def config(self, recipe: Recipe, device: Device, smoke: bool) -> dict[str, Any]:
        return {}

    def run(self, ctx: StageContext) -> StageResult:
        return StageResult()

    def report_sections(self, record: dict[str, Any], manifest: dict[str, Any], plots: dict[str, Path]
                        ) -> list[ReportSection]:
        return [ReportSection(record["info"]["title"], record["info"]["lines"], self.summary)]


def _record(title: str, *lines: str) -> dict[str, Any]:
    return {"info": {"title": title, "lines": list(lines)}}


def test_sections_come_from_the_stages_that_ran_merged_by_title() -> None:
    stages = [_Fake("a"), _Fake("b"), _Fake("c"), _Fake("never-ran"), _Fake("s", summary=True)]
    records = {"a": _record("Alpha", "- from a"), "b": _record("Beta", "- from b"), "c": _record("Alpha", "- from c"),
               "s": _record("Top", "- summary")}
    text = build_markdown(MANIFEST, records, {}, stages=stages)
    assert "## Alpha\n\n- from a\n- from c\n\n## Beta\n\n- from b\n" in text  # one heading, pipeline order
    assert text.count("## Alpha") == 1 and "never-ran" not in text
    assert text.index("## Top") < text.index("## Alpha") < text.index("## Stages")  # summary first


def test_report_builder_names_no_stage() -> None:
    load_stages()
    for module in ("build.py", "tables.py", "plots.py"):
        strings = {node.value for node in ast.walk(ast.parse((ROOT / "edgekd" / "report" / module).read_text()))
                   if isinstance(node, ast.Constant) and isinstance(node.value, str)}
        assert not strings & set(STAGES.names()), module


def _fresh(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_runner_as_a_library_finds_every_stage_through_entry_points() -> None:
    out = _fresh("import sys\nfrom edgekd.pipeline.stage import ordered_stages\n"
                 "assert 'edgekd.stages' not in sys.modules\n"
                 "print(','.join(s.name for s in ordered_stages()))")
    assert {"train-teacher", "distill", "export", "evaluate", "bench", "select", "report"} <= set(out.split(","))


def test_config_loads_no_module_above_it() -> None:
    out = _fresh("import sys, edgekd.config\n"
                 "print(','.join(sorted(m for m in sys.modules if m.startswith('edgekd.') or m == 'torch')))")
    # edgekd.capabilities is the runtime capability table as plain data, assembled from each runtime package's spec
    # module (which imports only the table's types): profiles load against it; no runner, session or back end
    loaded = out.split(",")
    table = [m for m in loaded if m.startswith("edgekd.runtimes")]
    assert all(m in ("edgekd.runtimes", "edgekd.runtimes._table") or m.count(".") == 2 or m.endswith(".spec")
               for m in table), out
    assert "torch" not in loaded and {m.rsplit(".", 1)[-1] for m in table if m.count(".") == 3} == {"spec"}, out
    assert all(m.startswith(("edgekd.config", "edgekd.errors", "edgekd.capabilities", "edgekd.runtimes"))
               for m in loaded), out


def test_export_leaves_pairs_another_stage_builds_to_that_stage_when_it_ran() -> None:
    """The capability table says who builds ``openvino/int8`` (quantize); export lists it as not built only when that
    stage did not run, and always lists a pair it could not build itself."""
    from edgekd.stages.export import Export

    record = {"info": {"not_built": {"openvino/int8": "int8 artifacts come from a quantize stage",
                                     "tensorrt/fp16": "no NVIDIA GPU"}}}

    def lines(stages: list[dict[str, Any]]) -> list[str]:
        sections = Export().report_sections(record, {**MANIFEST, "stages": stages}, {})
        return [line for section in sections for line in section.lines]

    assert lines([{"name": "quantize", "status": "done"}]) == ["- `tensorrt/fp16`: no NVIDIA GPU"]
    assert lines([{"name": "quantize", "status": "failed"}]) == [
        "- `openvino/int8`: int8 artifacts come from a quantize stage", "- `tensorrt/fp16`: no NVIDIA GPU"]
