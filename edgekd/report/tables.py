"""Rows of the report's tables, computed from a manifest (shared by the markdown report and the CLI summary)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

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


#: inference precisions that name a float type: what a runtime computes the non-quantized layers of a graph in
FLOAT_COMPUTE = frozenset({"f32", "fp32", "bf16", "f16", "fp16"})
#: layer precisions (``metrics.compute.layer_precisions``) of layers that compute in 8-bit integers
INT8_LAYERS = frozenset({"u8", "i8"})


def computed_in(precision: str, metrics: Mapping[str, Any], info: Mapping[str, Any]) -> str:
    """What an artifact of ``precision`` with these ``metrics`` and ``info`` computed in, as its runtime reported it
    (``metrics.compute.inference_precision``, else the parity check's), or —.

    A runtime compiled with a float inference precision still runs an INT8 artifact's quantized layers in INT8; the
    precision it reports is the one of the other layers. For an INT8 artifact that label is therefore given as
    ``int8+<float>`` (the form a runtime that reports the graph's own types uses), with the count of layers that ran
    in 8-bit integers where the runtime lists its layers' precisions: ``int8+f32 (11 of 12 layers int8)``.
    """
    compute = metrics.get("compute") or {}
    label = compute.get("inference_precision") or (info.get("parity") or {}).get("compute") or "—"
    if precision != "int8" or label not in FLOAT_COMPUTE:
        return label
    layers = compute.get("layer_precisions") or {}
    int8 = sum(n for precision, n in layers.items() if precision in INT8_LAYERS)
    return f"int8+{label}" + (f" ({int8} of {sum(layers.values())} layers int8)" if layers else "")


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
        rows.append([
            art.name, art.format, art.precision, computed_in(art.precision, art.metrics, art.info), art.runtime,
            fmt_size(art), fmt_accuracy(art, "val_accuracy"), fmt_accuracy(art), agreement, diff,
            fmt_latency(art, "p50"), fmt_latency(art, "p90"), fmt_latency(art, "p99"), verdict_text,
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
