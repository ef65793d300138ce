"""The report's INT8-against-fp32 part: latency saved per node (``metrics.latency_saved``, from the bench stage's
per-layer profiles), why an INT8 artifact measured slower than its fp32 sibling, and a chart of each node's
sensitivity against the latency its INT8 saves, its chosen precision marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.bench.saving import slower_parts
from edgekd.report.plots import _figure, _save
from edgekd.runtimes._profile import module_path

SLOWER_PARTS = 5
"""Most parts named in an "INT8 is slower" sentence."""

_OVERHEAD_WORDS = {"quantize": "the added quantize/dequantize nodes", "layout": "the layout changes (transpose, "
                   "reorder) the runtime added"}


def saved_by_node(art: dict[str, Any]) -> dict[str, float]:
    """Source node name → latency saved (ms) by the entry it belongs to, from the artifact's ``latency_saved``."""
    record = art.get("metrics", {}).get("latency_saved")
    if not isinstance(record, dict):
        return {}
    return {name: e["saved_ms"] for e in record["nodes"] for name in e["names"]}


def fp32_sibling(art: dict[str, Any], artifacts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The measured fp32 artifact of the same source model in the same runtime as the INT8 ``art``."""
    return next((a for a in artifacts if a.get("precision") == "fp32" and a.get("runtime") == art.get("runtime")
                 and a.get("status", "ok") != "failed" and a.get("info", {}).get("source") == art["info"].get("source")
                 and "latency_ms" in a.get("metrics", {})), None)


def _part(entry: dict[str, Any]) -> str:
    if entry["role"] in _OVERHEAD_WORDS:
        return f"{_OVERHEAD_WORDS[entry['role']]} ({entry['int8_ms']:.4f} ms, fp32 {entry['float_ms']:.4f} ms)"
    if entry.get("float_op") is None:
        return f"`{entry['node']}` ({entry['int8_op']}, {entry['int8_ms']:.4f} ms, fused away in fp32)"
    return f"`{entry['node']}` ({entry['int8_op']} {entry['int8_ms']:.4f} ms vs {entry['float_op']} " \
        f"{entry['float_ms']:.4f} ms)"


def slower_lines(manifest: dict[str, Any]) -> list[str]:
    """One sentence per INT8 artifact whose p50 exceeds its fp32 sibling's in the same runtime: the layers whose
    INT8 time exceeds their float time in the per-layer profiles, and the quantize/dequantize and layout overheads,
    largest excess first; or, without profiles, that none were taken."""
    lines = []
    artifacts = manifest["artifacts"]
    for art in artifacts:
        if art.get("precision") != "int8" or "latency_ms" not in art.get("metrics", {}):
            continue
        sibling = fp32_sibling(art, artifacts)
        if sibling is None:
            continue
        p50, fp32_p50 = art["metrics"]["latency_ms"]["p50"], sibling["metrics"]["latency_ms"]["p50"]
        if p50 <= fp32_p50:
            continue
        head = (f"`{art['name']}`: INT8 is slower than fp32 here (p50 {p50:.4f} ms vs {fp32_p50:.4f} ms for "
                f"`{sibling['name']}` in {art['runtime']})")
        record = art["metrics"].get("latency_saved")
        if not isinstance(record, dict):
            lines.append(f"- {head}; no per-layer profiles were taken to say why.")
            continue
        parts = slower_parts(record, SLOWER_PARTS)
        profiles = (f"per-layer profiles against `{record['float_artifact']}`: {record['int8_ms']:.4f} ms vs "
                    f"{record['float_ms']:.4f} ms in layers")
        if not parts:
            lines.append(f"- {head}; no layer is slower in INT8 in the {profiles}, so the difference lies outside "
                         f"the layers (input/output handling, or noise).")
            continue
        lines.append(f"- {head}, because of {'; '.join(_part(p) for p in parts)} ({profiles}).")
    return lines


def _chosen(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The selected artifact when it is mixed-precision INT8 with latency saved, else the first such artifact."""
    def has_both(a: dict[str, Any]) -> bool:
        return "mixed" in a.get("info", {}) and isinstance(a.get("metrics", {}).get("latency_saved"), dict)

    candidates = [a for a in manifest["artifacts"] if has_both(a)]
    return next((a for a in candidates if a["name"] == manifest.get("selected")), None) or \
        (candidates[0] if candidates else None)


def sensitivity_latency_plot(manifest: dict[str, Any], path: Path) -> Path | None:
    """Per quantized node of a mixed-precision artifact (the selected one, else the first with profiles): the
    accuracy regained when it alone is float (points) against the latency its INT8 saves (ms), nodes kept in float
    drawn as red squares, INT8 nodes as blue dots; None when no such artifact exists."""
    art = _chosen(manifest)
    if art is None:
        return None
    saved = saved_by_node(art)
    rows = [r for r in art["info"]["mixed"]["sensitivity"] if r["node"] in saved]
    if not rows:
        return None
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    styles = {"int8": {"marker": "o", "color": "#2b6cb0"}, "fp32": {"marker": "s", "color": "#c53030"}}
    for precision, style in styles.items():
        chosen = [r for r in rows if r["precision"] == precision]
        ax.scatter([saved[r["node"]] for r in chosen], [100 * r["accuracy_gain"] for r in chosen],
                   label=f"kept in {precision}", **style)
    for r in sorted(rows, key=lambda r: (-abs(r["accuracy_gain"]), -abs(saved[r["node"]])))[:6]:
        ax.annotate(module_path(r["node"]) or r["node"],
                    (saved[r["node"]], 100 * r["accuracy_gain"]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.axvline(0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("latency saved by INT8 (ms per inference, fp32 − INT8 profile)")
    ax.set_ylabel("accuracy regained if float (points)")
    ax.set_title(f"{art['name']}: sensitivity vs latency saved")
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def int8_section(manifest: dict[str, Any], plots: dict[str, Path]) -> list[str]:
    """Markdown lines (``## INT8 against fp32``, ...): the "slower because" sentences and the chart."""
    lines = slower_lines(manifest)
    chart = ["![sensitivity vs latency saved per node](plots/int8_layers.png)", ""] if "int8_layers" in plots else []
    if not lines and not chart:
        return []
    return ["## INT8 against fp32", "", *lines, *([""] if lines else []), *chart]
