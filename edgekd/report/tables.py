"""Rows of the report's tables, computed from a manifest (shared by the markdown report and the CLI summary)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgekd.pipeline.artifacts import Artifact
    from edgekd.pipeline.manifest import Manifest


def fmt_latency(artifact: Artifact, stat: str = "p50") -> str:
    value = artifact.metrics.get("latency_ms", {}).get(stat)
    return f"{value:.3f}" if value is not None else "—"


def fmt_accuracy(artifact: Artifact, metric: str = "accuracy") -> str:
    """Test accuracy (``metric="accuracy"``) or validation accuracy (``"val_accuracy"``) to four places, or —."""
    value = artifact.metrics.get(metric)
    return f"{value:.4f}" if value is not None else "—"


def fmt_params(artifact: Artifact) -> str:
    value = artifact.info.get("parameters")
    return f"{value:,}" if value is not None else "—"


def si(count: float, space: str = " ") -> str:
    """A count in SI units, three significant digits: ``9,345,920`` as ``9.35 M`` (``9.35M`` with ``space=""``)."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= scale:
            return f"{count / scale:.3g}{space}{unit}"
    return f"{count:.3g}"


def fmt_macs(artifact: Artifact) -> str:
    """Multiply-accumulates of one forward pass, in SI units (``9.35 M``)."""
    value = artifact.info.get("macs")
    return "—" if value is None else si(value)


def fmt_size(artifact: Artifact) -> str:
    return f"{artifact.bytes / 1e6:.3f}"


def summary_rows(manifest: Manifest) -> list[list[str]]:
    """Teacher vs student: one row per role, the torch model and its best deployed artifact."""
    rows = []
    for art in manifest.artifacts:
        name = f"{art.name} ✗ failed" if art.status == "failed" else art.name
        rows.append([
            art.role, name, f"{art.runtime}/{art.precision}", fmt_params(art), fmt_macs(art), fmt_size(art),
            fmt_accuracy(art, "val_accuracy"), fmt_accuracy(art), fmt_latency(art, "p50"), fmt_latency(art, "p90"),
        ])
    return rows


SUMMARY_HEADER = ["role", "artifact", "runtime", "parameters", "MACs", "size MB", "val accuracy", "test accuracy",
                  "p50 ms", "p90 ms"]


def artifact_rows(manifest: Manifest) -> list[list[str]]:
    """Every artifact with parity, latency percentiles and budget verdict."""
    rows = []
    for art in manifest.artifacts:
        metrics = art.metrics
        parity = art.info.get("parity", {})
        agreement = f"{parity['top1_agreement']:.4f}" if parity else "—"
        diff = f"{parity['max_abs_diff']:.1e}" if parity else "—"
        verdict = metrics.get("meets_budgets")
        failures = "; ".join(metrics.get("budget_failures", []))
        verdict_text = "—" if verdict is None else ("yes" if verdict else f"no: {failures}")
        if art.status == "failed":
            verdict_text = "**failed** (see Failed artifacts)"
        compute = metrics.get("compute", {}).get("inference_precision") or parity.get("compute") or "—"
        rows.append([
            art.name, art.format, art.precision, compute, art.runtime, fmt_size(art),
            fmt_accuracy(art, "val_accuracy"), fmt_accuracy(art), agreement, diff, fmt_latency(art, "p50"),
            fmt_latency(art, "p90"), fmt_latency(art, "p99"), verdict_text,
        ])
    return rows


ARTIFACT_HEADER = ["artifact", "format", "precision", "computed in", "runtime", "size MB", "val accuracy",
                   "test accuracy", "top-1 agreement",
                   "max |Δlogit|", "p50 ms", "p90 ms", "p99 ms", "meets budgets"]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured markdown table."""
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(header), "|" + "|".join("---" for _ in header) + "|", *(line(row) for row in rows)])
