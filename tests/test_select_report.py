"""Selection under budgets and the report's tables, against hand-made artifacts."""

from __future__ import annotations

import re

from edgekd.config.device import Budgets
from edgekd.pipeline.artifacts import Artifact
from edgekd.report.build import build_html
from edgekd.report.tables import markdown_table
from edgekd.stages._selection import budget_failures, rank_key


def art(name: str, accuracy: float | None, p90: float | None, mb: float) -> Artifact:
    metrics: dict = {}
    if accuracy is not None:
        metrics["accuracy"] = accuracy
    if p90 is not None:
        metrics["latency_ms"] = {"p50": p90 / 2, "p90": p90, "p99": p90 * 2, "mean": p90}
    return Artifact(name=name, path=f"{name}.onnx", format="onnx", precision="fp32", runtime="onnxruntime",
                    role="student", input={}, bytes=int(mb * 1e6), metrics=metrics)


BUDGETS = Budgets(max_size_mb=1.0, max_latency_ms=5.0, min_accuracy=0.9, latency_stat="p90")


def test_budget_failures_name_each_broken_budget() -> None:
    assert budget_failures(art("ok", 0.95, 4.0, 0.5), BUDGETS) == []
    assert budget_failures(art("big", 0.95, 4.0, 1.5), BUDGETS) == ["size 1.500 MB > 1.0 MB"]
    assert budget_failures(art("slow", 0.95, 6.0, 0.5), BUDGETS) == ["latency p90 6.000 ms > 5.0 ms"]
    assert budget_failures(art("bad", 0.85, 4.0, 0.5), BUDGETS) == ["accuracy 0.8500 < 0.9"]
    assert budget_failures(art("unmeasured", None, None, 0.5), BUDGETS) == [
        "latency not measured", "accuracy not measured"]


def test_rank_prefers_accuracy_then_latency_then_size() -> None:
    candidates = [art("a", 0.92, 3.0, 0.5), art("b", 0.95, 4.0, 0.9), art("c", 0.95, 2.0, 0.9),
                  art("d", 0.95, 2.0, 0.4)]
    ranked = sorted(candidates, key=lambda a: rank_key(a, BUDGETS))
    assert [a.name for a in ranked] == ["d", "c", "b", "a"]


def test_markdown_table_escapes_pipes_everywhere() -> None:
    table = markdown_table(["a", "max |x|"], [["1", "p|q"]])
    html = build_html(table, "t")
    assert len(re.findall(r"<th>", html)) == 2
    assert len(re.findall(r"<td>", html)) == 2
    assert "max |x|" in html and "p|q" in html
