"""Plots of a run: accuracy vs latency of every artifact, and the training curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd._atomic import atomic_path


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, path: Path) -> Path:
    """Write ``fig`` as PNG atomically and free it."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def pareto_front(points: list[tuple[str, float, float]]) -> list[str]:
    """Names of the points ``(name, latency, accuracy)`` that no other point beats on both axes, fastest first.

    A point is dominated when another is at least as fast and at least as accurate, and strictly better on one.
    """
    front: list[tuple[str, float, float]] = []
    for name, latency, acc in sorted(points, key=lambda p: (p[1], -p[2])):
        if not front or acc > front[-1][2]:
            front.append((name, latency, acc))
    return [name for name, _, _ in front]


def accuracy_latency_plot(manifest: dict[str, Any], path: Path) -> Path | None:
    """Test accuracy vs p50 latency of every measured artifact: the Pareto front, budgets, the selected one.

    Artifacts that miss a budget are drawn hollow, those that are not selection candidates (a runtime the device
    lacks, or a role never deployed: teacher, pruned baselines) as grey squares; the Pareto front of the candidates
    (no candidate both faster and more accurate) is a step line; the device's latency budget (at its own statistic)
    and accuracy floor are dashed lines, or, where one lies far outside the points (latency over 3x the slowest,
    a floor more than the accuracies' spread below the least accurate), a note in the corner instead.
    """
    arts = [a for a in manifest["artifacts"] if a.get("status", "ok") != "failed"
            and "accuracy" in a.get("metrics", {}) and "latency_ms" in a.get("metrics", {})]
    points = [(a["name"], a["metrics"]["latency_ms"]["p50"], a["metrics"]["accuracy"]) for a in arts]
    if not points:
        return None
    misses = {a["name"] for a in arts if a["metrics"].get("meets_budgets") is False}
    candidates = set((manifest.get("selection") or {}).get("candidates") or [p[0] for p in points])
    front = pareto_front([p for p in points if p[0] in candidates]) or pareto_front(points)
    by_name = {p[0]: p for p in points}
    plt = _figure()
    fig, ax = plt.subplots(figsize=(9 if len(points) > 5 else 7.5, 4.8), dpi=110)
    crowded = len(points) > 5  # then a legend names the points; only the selected one is labelled in place
    xs, ys = [by_name[n][1] for n in front], [by_name[n][2] for n in front]
    ax.step(xs, ys, where="post", color="#2b6cb0", alpha=0.5, linewidth=1.5, zorder=2)
    ax.scatter(xs, ys, s=320, facecolors="none", edgecolors="#2b6cb0", alpha=0.45, linewidths=1.2, zorder=2,
               label="Pareto front")
    for i, (name, latency, acc) in enumerate(sorted(points, key=lambda p: p[1])):
        chosen = name == manifest.get("selected")
        color = plt.get_cmap("tab20")(i % 20) if name in candidates else "#a0aec0"
        hollow = name in misses
        note = " (misses a budget)" if hollow else "" if name in candidates else " (not a selection candidate)"
        ax.scatter(latency, acc, s=170 if chosen else 50, marker="*" if chosen else "o" if name in candidates
                   else "s", zorder=3, label=name + note, edgecolors=color, facecolors="none" if hollow else color,
                   linewidths=1.5)
        if chosen or not crowded:
            ax.annotate(name + (" (selected)" if chosen else ""), (latency, acc), textcoords="offset points",
                        xytext=(6, 10 - 14 * (i % 3)), fontsize=8, fontweight="bold" if chosen else "normal")
    ax.set_xscale("log")
    ax.margins(x=0.15, y=0.12)
    budgets = manifest.get("budgets", {})
    stat = budgets.get("latency_stat", "p90")
    off_axis = []  # budgets far from every point: a line there would squash the points into a corner
    if budget := budgets.get("max_latency_ms"):
        if budget <= 3 * max(p[1] for p in points):
            ax.axvline(budget, linestyle="--", color="grey", label=f"latency budget ({stat})")
        else:
            off_axis.append(f"latency budget {budget:g} ms ({stat}), right of the plot")
    if floor := budgets.get("min_accuracy"):
        accuracies = [p[2] for p in points]
        if floor >= min(accuracies) - max(max(accuracies) - min(accuracies), 0.01):
            ax.axhline(floor, linestyle=":", color="grey", label="accuracy floor")
        else:
            off_axis.append(f"accuracy floor {floor:g}, below the plot")
    if off_axis:
        ax.text(0.01, 0.01, "; ".join(off_axis), transform=ax.transAxes, fontsize=7, color="#4a5568",
                ha="left", va="bottom")
    ax.set_xlabel("latency p50 (ms, log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{manifest['recipe']} on {manifest['device']}: accuracy vs latency")
    ax.grid(alpha=0.3)
    if crowded:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    else:
        handles, labels = ax.get_legend_handles_labels()
        keep = [(h, lab) for h, lab in zip(handles, labels)
                if lab in {"Pareto front", "accuracy floor"} or lab.startswith("latency budget")]
        ax.legend(*zip(*keep), fontsize=8, loc="best")
    return _save(plt, fig, path)


def training_plot(histories: dict[str, list[dict[str, float]]], path: Path) -> Path | None:
    """Validation accuracy and training loss per epoch for every trained model."""
    histories = {k: v for k, v in histories.items() if v}
    if not histories:
        return None
    plt = _figure()
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=110)
    for label, history in histories.items():
        epochs = [h["epoch"] for h in history]
        ax_acc.plot(epochs, [h["val_accuracy"] for h in history], marker="o", markersize=3, label=label)
        ax_loss.plot(epochs, [h["loss"] for h in history], marker="o", markersize=3, label=label)
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="training loss (CE + weighted distillation terms)")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(plt, fig, path)
