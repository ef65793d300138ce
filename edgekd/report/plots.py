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


def accuracy_latency_plot(manifest: dict[str, Any], path: Path) -> Path | None:
    """Scatter of test accuracy vs p50 latency, with the device's budgets as dashed lines."""
    points = [(a["name"], a["metrics"]["latency_ms"]["p50"], a["metrics"]["accuracy"]) for a in manifest["artifacts"]
              if "accuracy" in a.get("metrics", {}) and "latency_ms" in a.get("metrics", {})]
    if not points:
        return None
    plt = _figure()
    fig, ax = plt.subplots(figsize=(9 if len(points) > 5 else 7, 4.5), dpi=110)
    crowded = len(points) > 5  # then a legend names the points; only the selected one is labelled in place
    for i, (name, latency, acc) in enumerate(sorted(points, key=lambda p: p[1])):
        chosen = name == manifest.get("selected")
        ax.scatter(latency, acc, s=140 if chosen else 45, marker="*" if chosen else "o", zorder=3, label=name,
                   color=plt.get_cmap("tab20")(i % 20))
        if chosen or not crowded:
            ax.annotate(name + (" (selected)" if chosen else ""), (latency, acc), textcoords="offset points",
                        xytext=(6, 10 - 14 * (i % 3)), fontsize=8, fontweight="bold" if chosen else "normal")
    ax.set_xscale("log")
    ax.margins(x=0.08, y=0.12)
    budgets = manifest.get("budgets", {})
    if budgets.get("max_latency_ms"):
        ax.axvline(budgets["max_latency_ms"], linestyle="--", color="grey", label="latency budget")
    if budgets.get("min_accuracy"):
        ax.axhline(budgets["min_accuracy"], linestyle=":", color="grey", label="accuracy floor")
    ax.set_xlabel("latency p50 (ms, batch 1, log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{manifest['recipe']} on {manifest['device']}")
    ax.grid(alpha=0.3)
    if crowded:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    elif ax.get_legend_handles_labels()[0]:
        handles, labels = ax.get_legend_handles_labels()
        keep = [(h, lab) for h, lab in zip(handles, labels) if lab in {"latency budget", "accuracy floor"}]
        if keep:
            ax.legend(*zip(*keep), fontsize=8)
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
