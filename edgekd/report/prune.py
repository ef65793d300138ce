"""Report section of the prune stage: LayerMerge against merge-only and prune-only at every budget.

Per budget and method: the test accuracy, the latency the in-context table predicted (``M + Σ Δ``, see
:mod:`edgekd.stages._prune_plans`), the latency of the plan's network timed by the prune stage right after the table
(between two timings of the unpruned network), their relative error with its cause where it is above
:data:`GAP_FLAG`, and the latency `bench` measured later on the same runtime; plus an accuracy-vs-latency plot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.report.plots import _figure, _save
from edgekd.report.tables import markdown_table

#: predicted vs measured latency: a relative error above this is flagged
GAP_FLAG = 0.10
PLOT = "prune_accuracy_latency"
_METHOD_LABEL = {"layermerge": "LayerMerge", "merge-only": "merge-only", "prune-only": "prune-only"}


def _points(manifest: dict[str, Any], info: dict[str, Any]) -> list[dict[str, Any]]:
    """One point per result (and the unpruned student): measured accuracy and latency where bench measured them."""
    artifacts = {a["name"]: a for a in manifest["artifacts"]}
    stat = info["statistic"]

    def measured(name: str, fallback: str) -> tuple[float | None, float | None]:
        art = artifacts.get(name) or {}
        torch_art = artifacts.get(fallback) or {}
        acc = art.get("metrics", {}).get("accuracy", torch_art.get("metrics", {}).get("accuracy"))
        return acc, art.get("metrics", {}).get("latency_ms", {}).get(stat)

    acc, latency = measured(info["unpruned_measured_artifact"], "student-unpruned")
    points = [{"method": "unpruned", "budget": "—", "predicted_ms": info["unpruned_measured_ms"],
               "stage_ms": None, "relative_error": None, "cause": None,
               "accuracy": acc, "latency_ms": latency, "kept": info["depth"], "merged": info["depth"],
               "val_accuracy": info["base_val_accuracy"], "artifact": "student-unpruned"}]
    for r in info["results"]:
        acc, latency = measured(r["measured_artifact"], r["artifact"])
        points.append({"method": r["method"], "budget": r["budget"], "predicted_ms": r["predicted_ms"],
                       "stage_ms": r.get("measured_ms"), "relative_error": r.get("relative_error"),
                       "cause": r.get("error_cause"),
                       "accuracy": acc, "latency_ms": latency, "kept": len(r["kept_convs"]),
                       "merged": r["merged_depth"], "val_accuracy": r["val_accuracy"], "artifact": r["artifact"]})
    return points


def _error(point: dict[str, Any]) -> str:
    """The relative error of the prediction against the prune stage's own timing, flagged above GAP_FLAG."""
    error = point["relative_error"]
    if error is None:
        return "—"
    return f"{100 * error:+.1f} %" + (f" **⚠ > {100 * GAP_FLAG:.0f} %**" if abs(error) > GAP_FLAG else "")


def _num(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _claim(points: list[dict[str, Any]], infeasible: dict[str, str]) -> list[str]:
    """Per budget: is LayerMerge at least as accurate as every baseline at that budget? A baseline with no plan
    within the budget (``infeasible``) cannot reach it at all, which counts for LayerMerge."""
    lines = []
    for budget in dict.fromkeys(p["budget"] for p in points if p["method"] == "layermerge"):
        group = {p["method"]: p for p in points if p["budget"] == budget}
        ours = group["layermerge"]["accuracy"]
        rivals = {m: p["accuracy"] for m, p in group.items() if m != "layermerge" and p["accuracy"] is not None}
        unreached = [m for m in _METHOD_LABEL if m != "layermerge" and f"{m}-{budget}" in infeasible]
        if ours is None or not (rivals or unreached):
            continue
        verdict = "yes" if all(ours >= acc for acc in rivals.values()) else "no"
        shown = ", ".join([f"{m} {acc:.4f}" for m, acc in rivals.items()] + [f"{m} no plan" for m in unreached])
        lines.append(f"- budget {budget}: LayerMerge {ours:.4f} vs {shown} — at least as accurate as every "
                     f"baseline: **{verdict}** (one seed)")
    return lines


def prune_section(manifest: dict[str, Any], records: dict[str, dict[str, Any]], plots: dict[str, Path]
                  ) -> list[str]:
    """Markdown lines of the depth-compression section (nothing when the run has no prune stage)."""
    info = records.get("prune", {}).get("info")
    if not info or "results" not in info:
        return []
    points = _points(manifest, info)
    stat = info["statistic"]
    rows = [[p["budget"], _METHOD_LABEL.get(p["method"], p["method"]), f"`{p['artifact']}`",
             f"{p['kept']} / {p['merged']}", _num(p["val_accuracy"], 4), _num(p["accuracy"], 4),
             _num(p["predicted_ms"], 4), _num(p["stage_ms"], 4), _error(p), p["cause"] or "",
             _num(p["latency_ms"], 4)] for p in points]
    mode = info["importance_mode"]
    importance = (f"importance by fine-tuning {info['importance_steps']} steps per entry (the paper)"
                  if mode == "finetune" else f"importance by the cheap **proxy** (BN statistics re-estimated on "
                  f"{info['importance_steps']} batches, no fine-tuning; not the paper's method)")
    confirmation = info.get("confirmation") or {}
    lines = [
        "## Depth compression (LayerMerge)", "",
        (f"LayerMerge (Kim et al., ICML 2024) beside merge-only depth compression and layer pruning only, at the same "
         f"budgets. Latency table: {info['entries']} entries timed in context on {info['runtime']}/"
         f"{info['precision']} (batch {info['batch_size']}, {stat}): each is the unpruned network with only that "
         "change applied, timed interleaved with the unpruned network, as a share of it; the changes the plans use "
         f"are timed again until each has {confirmation.get('pairs', 1)} such pairs (their median counts), and a plan "
         f"is predicted as the unpruned latency plus its changes; {importance}. The unpruned student measured "
         f"{info['unpruned_measured_ms']:.4f} ms (median of {len(info.get('reference_timings_ms', []))} timings "
         f"during the table build, p10–p90 spread {100 * info.get('reference_spread', 0.0):.1f} %; a change's share "
         f"varies by {100 * info.get('ratio_noise', 0.0):.1f} % between pairs; per-call overhead "
         f"{info['overhead_ms']:.4f} ms). The deployed `student` is LayerMerge at budget {info['deployed']}."), "",
        (f"Accuracy on the test split; \"measured\" is the plan's network timed by the prune stage after the table "
         f"({stat}, ms), \"error\" the prediction's relative error against it (flagged above "
         f"{100 * GAP_FLAG:.0f} %, with its cause where one can be named); \"bench\" is the latency bench measured "
         "later on the table's runtime; \"convs\" is convs kept / layers after merging."), "",
        markdown_table(["budget", "method", "artifact", "convs kept / merged layers", "val accuracy",
                        "test accuracy", "predicted ms", "measured ms", "error", "cause", "bench ms"], rows), "",
    ]
    if PLOT in plots:
        lines += [f"![LayerMerge accuracy vs latency](plots/{PLOT}.png)", ""]
    claim = _claim(points, info.get("infeasible") or {})
    if claim:
        lines += ["Paper's claim (LayerMerge at least as accurate as both baselines at equal latency budget):", "",
                  *claim, ""]
    if info.get("infeasible"):
        lines += ["No plan within the budget:", "", *[f"- `{k}`: {v}" for k, v in info["infeasible"].items()], ""]
    return lines


def prune_plot(manifest: dict[str, Any], records: dict[str, dict[str, Any]], folder: Path) -> dict[str, Path]:
    """``{PLOT: path}`` of the accuracy-vs-measured-latency plot of every method (empty without measurements)."""
    info = records.get("prune", {}).get("info")
    if not info or "results" not in info:
        return {}
    points = [p for p in _points(manifest, info) if p["accuracy"] is not None and p["latency_ms"] is not None]
    if not points:
        return {}
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    markers = {"unpruned": "*", "layermerge": "o", "merge-only": "s", "prune-only": "^"}
    for method in dict.fromkeys(p["method"] for p in points):
        group = sorted((p for p in points if p["method"] == method), key=lambda p: p["latency_ms"])
        ax.plot([p["latency_ms"] for p in group], [p["accuracy"] for p in group], marker=markers.get(method, "o"),
                markersize=12 if method == "unpruned" else 7, linestyle="-" if len(group) > 1 else "none",
                label=_METHOD_LABEL.get(method, method))
        for p in group:
            if p["budget"] != "—":
                ax.annotate(p["budget"], (p["latency_ms"], p["accuracy"]), textcoords="offset points",
                            xytext=(5, 5), fontsize=8)
    ax.set_xlabel(f"measured latency {info['statistic']} (ms, {info['runtime']}/{info['precision']}, "
                  f"batch {info['batch_size']})")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"depth compression of the student — {manifest['recipe']} on {manifest['device']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return {PLOT: _save(plt, fig, folder / f"{PLOT}.png")}
