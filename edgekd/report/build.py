"""report.md and report.html of a run directory."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekd._atomic import atomic_write_text
from edgekd.pipeline.manifest import Manifest
from edgekd.pipeline.stage import TRAINING_SECTION, ReportSection, Stage
from edgekd.report.plots import accuracy_latency_plot, training_plot
from edgekd.report.tables import ARTIFACT_HEADER, SUMMARY_HEADER, artifact_rows, markdown_table, summary_rows

HTML_STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #1d2330; line-height: 1.45; }
h1 { border-bottom: 2px solid #2b6cb0; padding-bottom: .3em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #cbd5e0; padding: 4px 8px; text-align: left; }
th { background: #edf2f7; }
tr:nth-child(even) td { background: #f7fafc; }
img { max-width: 100%; border: 1px solid #e2e8f0; }
code { background: #edf2f7; padding: 1px 4px; border-radius: 3px; }
"""


def _verdict(manifest: dict[str, Any]) -> str:
    budgets = {k: v for k, v in manifest.get("budgets", {}).items() if v is not None and k != "latency_stat"}
    selected = manifest.get("selected")
    budget_text = ", ".join(f"{k} = {v}" for k, v in budgets.items()) or "none"
    stat = manifest.get("budgets", {}).get("latency_stat", "p90")
    if selected and (manifest.get("selection") or {}).get("meets_budgets", True):
        return f"**Selected: `{selected}`** (budgets: {budget_text}; latency budget on {stat}); see `deploy/`."
    if selected:
        return (f"**Selected (smoke run, budgets not met and not enforced): `{selected}`** (budgets: {budget_text}); "
                "see `deploy/`.")
    return f"**No artifact meets the budgets** of `{manifest['device']}` ({budget_text})."


def _cell(value: float | None, limit: float | None, fmt: str, worse: str) -> str:
    """``0.043 ≤ 20`` / ``0.100 < 0.8 ✗``: a measured value against its budget."""
    if limit is None:
        return "—" if value is None else format(value, fmt)
    if value is None:
        return "not measured ✗"
    bad = value > limit if worse == "above" else value < limit
    sign = (">" if bad else "≤") if worse == "above" else ("<" if bad else "≥")
    return f"{value:{fmt}} {sign} {limit}" + (" ✗" if bad else "")


def selection_lines(manifest: dict[str, Any]) -> list[str]:
    """Budgets and verdict of every candidate, and why the selected artifact won."""
    selection = manifest.get("selection")
    if not selection:
        return []
    budgets = manifest.get("budgets", {})
    stat = budgets.get("latency_stat", "p90")
    rows = []
    for art in manifest["artifacts"]:
        if art["name"] not in selection["candidates"]:
            continue
        m = art.get("metrics", {})
        if art.get("status") == "failed":
            verdict = f"failed: {art.get('reason', '')}"
        elif m.get("meets_budgets"):
            verdict = "meets all"
        else:
            verdict = "misses: " + "; ".join(m.get("budget_failures", []))
        name = f"**{art['name']}** (selected)" if art["name"] == manifest.get("selected") else art["name"]
        rows.append([name, _cell(art["bytes"] / 1e6, budgets.get("max_size_mb"), ".3f", "above"),
                     _cell(m.get("latency_ms", {}).get(stat), budgets.get("max_latency_ms"), ".3f", "above"),
                     _cell(m.get("val_accuracy"), budgets.get("min_accuracy"), ".4f", "below"),
                     "—" if m.get("accuracy") is None else f"{m['accuracy']:.4f}", verdict])
    why = selection["reason"] if selection.get("selected") else (selection.get("closest") or {}).get(
        "message", selection["reason"])
    drop = (f", max accuracy drop {100 * selection['max_accuracy_drop']:.2f} points"
            if selection["objective"] != "accuracy" else "")
    split = selection.get("selected_by", "test")
    return ["## Selection", "",
            f"Objective `{selection['objective']}`{drop} (recipe `select:`). Candidates: the artifacts whose runtime "
            f"the device offers; failed artifacts are never selected. **Chosen on the {split} split**: the accuracy "
            f"floor, the accuracy drop and every tie read {split} accuracy"
            + ("; test accuracy is reported only." if split == "validation" else "."), "",
            markdown_table(["artifact", "size MB (budget)", f"latency {stat} ms (budget)",
                            f"{'val' if split == 'validation' else split} accuracy (floor)", "test accuracy",
                            "verdict"], rows), "",
            f"**Why:** {why}", ""]


def _gate_lines(gate: dict[str, Any] | None) -> list[str]:
    """The CI gate's table against the recipe's `report.baseline`."""
    if gate is None:
        return []
    from edgekd.bench.gate import GATE_HEADER

    return ["## CI gate against the baseline", "", f"`{gate['baseline']}`: {gate['summary']}.", "",
            markdown_table(GATE_HEADER, gate["rows"]), ""]


def _stages_table(manifest: Manifest) -> str:
    rows = [[s.name, s.status, f"{s.seconds:.1f}", s.reason] for s in manifest.stages]
    return markdown_table(["stage", "status", "seconds", "why"], rows)


def _render(sections: list[ReportSection]) -> list[str]:
    """Markdown lines of ``sections``, those of the same title merged under one heading (first one's place)."""
    merged: dict[str, list[str]] = {}
    for section in sections:
        merged.setdefault(section.title, []).extend(section.lines)
    return [line for title, lines in merged.items() for line in (f"## {title}", "", *lines, "")]


def stage_sections(stages: Sequence[Stage], manifest: dict[str, Any], records: dict[str, dict[str, Any]],
                   plots: dict[str, Path]) -> list[ReportSection]:
    """Every section the run's stages supply, in pipeline order; the training plot joins the training section."""
    sections = [section for stage in stages if stage.name in records
                for section in stage.report_sections(records[stage.name], manifest, plots)]
    if "training" in plots:
        sections.append(ReportSection(TRAINING_SECTION, ["", "![training curves](plots/training.png)"]))
    return sections


def build_markdown(manifest: dict[str, Any], records: dict[str, dict[str, Any]], plots: dict[str, Path],
                   gate: dict[str, Any] | None = None, stages: Sequence[Stage] = ()) -> str:
    """The markdown report: the run's summary and artifact tables, then the sections ``stages`` supply."""
    typed = Manifest.model_validate(manifest)
    prov = typed.provenance
    libs = ", ".join(f"{k} {v}" for k, v in prov.libraries.items())
    parts = [
        f"# edgekd report — `{typed.recipe}` on `{typed.device}`",
        "",
        f"Run created {typed.created}, edgekd {typed.edgekd_version}, seed {typed.seed}"
        + (" — **smoke run: tiny budgets, numbers are not meaningful**." if typed.smoke else "."),
        "",
        _verdict(manifest),
        "",
        "## Teacher vs student",
        "",
        markdown_table(SUMMARY_HEADER, summary_rows(typed)),
        "",
        "## Every artifact, measured in its own runtime",
        "",
        "Accuracy on the validation split (what every choice reads) and on the test split (reported only), each in "
        "the artifact's own runtime; latency with batch 1 on the device (milliseconds); parity against the torch "
        "model on validation images, topped up with training images (never test images).",
        "",
        markdown_table(ARTIFACT_HEADER, artifact_rows(typed)),
        "",
    ]
    if "accuracy_latency" in plots:
        parts += ["![accuracy vs latency, with the Pareto front](plots/accuracy_latency.png)", ""]
    failed = [a for a in manifest["artifacts"] if a.get("status") == "failed"]
    if failed:
        parts += ["## Failed artifacts", "", "Kept with their figures, not measured further, never selected.", "",
                  *[f"- `{a['name']}`: {a['reason']}" for a in failed], ""]
    sections = stage_sections(stages, manifest, records, plots)
    parts += _render([s for s in sections if s.summary])
    parts += _gate_lines(gate)
    parts += _render([s for s in sections if not s.summary])
    parts += [
        "## Stages", "", _stages_table(typed), "",
        "## Provenance", "",
        f"- host: {prov.host['platform']} ({prov.host['cpu_count']} CPUs), Python {prov.host['python']}",
        f"- libraries: {libs}",
        f"- edgekd commit: {prov.git_commit or 'n/a (installed package)'}",
        "",
    ]
    return "\n".join(parts)


def build_html(markdown: str, title: str) -> str:
    """The markdown report rendered to a standalone HTML page (markdown-it-py, tables enabled)."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{HTML_STYLE}</style></head><body>\n{body}</body></html>\n")


def write_report(run_dir: Path, manifest: dict[str, Any], records: dict[str, dict[str, Any]], *,
                 html: bool = True, gate: dict[str, Any] | None = None, stages: Sequence[Stage] = ()) -> list[Path]:
    """Write plots, report.md (and report.html) into ``run_dir``; return the written files.

    ``records``: the stage records by name; ``stages``: the registered stages in pipeline order (those with a
    record supply their plots and sections). ``gate``: ``{baseline, summary, rows}`` of a CI gate check to show (see
    :mod:`edgekd.bench.gate`).
    """
    folder = run_dir / "plots"
    ran = [stage for stage in stages if stage.name in records]
    plots: dict[str, Path] = {}
    if (p := accuracy_latency_plot(manifest, folder / "accuracy_latency.png")) is not None:
        plots["accuracy_latency"] = p
    curves = [curve for stage in ran if (curve := stage.training_curve(records[stage.name])) is not None]
    if (p := training_plot(dict(curves), folder / "training.png")) is not None:
        plots["training"] = p
    for stage in ran:
        plots.update(stage.report_plots(records[stage.name], manifest, folder))
    markdown = build_markdown(manifest, records, plots, gate, ran)
    files = [*plots.values(), run_dir / "report.md"]
    atomic_write_text(run_dir / "report.md", markdown)
    if html:
        atomic_write_text(run_dir / "report.html", build_html(markdown, f"edgekd — {manifest['recipe']}"))
        files.append(run_dir / "report.html")
    return files
