"""The budget frontier as a figure: test accuracy against measured wall minutes, from the frontier records.

A frontier record (written by ``frontier.py``) holds in its figures the ``recipe``, the ``device`` and a list of
``points``, each with the ``wall_minutes`` its run from scratch took, its ``budget_minutes`` and the ``test_accuracy``
of the artifact chosen on validation; it also holds the ``anchor`` (a hand-written training to compare with). The
figure draws one series per record (a marker per point, labelled with its accuracy and budget), each distinct anchor
as its own marker, and the frontier's targets (``TARGETS``) as reference marks: a target is met by a point on or above
its dotted line and left of its end.

The SVG is the same bytes for the same records: matplotlib's SVG back end with a fixed ``svg.hashsalt`` (ids derived
from content, not random), no date or creator in the metadata, text kept as ``<text>`` elements, and every number on
the figure formatted by a fixed rule. Each drawn element carries an id (``gid``) that names it: ``series-<record>``,
``anchor-<n>``, ``target-<n>``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Point:
    """One point of a frontier: its measured wall minutes, its budget (minutes) and its test accuracy (0-1)."""

    minutes: float
    budget: float | None
    accuracy: float


@dataclass(frozen=True)
class Series:
    """The points of one frontier record, fastest first."""

    record: str
    label: str
    points: tuple[Point, ...]


@dataclass(frozen=True)
class Mark:
    """A reference mark: an anchor (a result to compare with) or a target (an accuracy to reach within a time)."""

    minutes: float
    accuracy: float
    label: str


#: The frontier's targets: 93.5 % test accuracy within 45 minutes, 94.0 % within 90 minutes.
TARGETS: tuple[Mark, ...] = (Mark(45.0, 0.935, "target 93.5 % in 45 min"),
                             Mark(90.0, 0.940, "target 94.0 % in 90 min"))

COLORS = ("#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#2c7a7b")


def is_frontier(record: dict[str, Any]) -> bool:
    """Whether ``record`` is a frontier record: figures with a recipe and points of wall minutes and test accuracy."""
    figures = record.get("figures") or {}
    points = figures.get("points")
    return (isinstance(figures.get("recipe"), str) and isinstance(points, list) and bool(points)
            and all(isinstance(p, dict) and isinstance(p.get("wall_minutes"), (int, float))
                    and isinstance(p.get("test_accuracy"), (int, float)) for p in points))


def frontier_series(records: list[dict[str, Any]]) -> list[Series]:
    """One series per frontier record, in the records' order; its label names the recipe and the device."""
    series = []
    for record in filter(is_frontier, records):
        figures = record["figures"]
        label = figures["recipe"] + (f" on {figures['device']}" if figures.get("device") else "")
        if figures.get("smoke"):
            label += " (smoke)"
        points = sorted((Point(float(p["wall_minutes"]),
                               None if p.get("budget_minutes") is None else float(p["budget_minutes"]),
                               float(p["test_accuracy"])) for p in figures["points"]),
                        key=lambda p: (p.minutes, p.accuracy))
        series.append(Series(record["name"], label, tuple(points)))
    return series


def target_gaps(series: list[Series]) -> list[dict[str, Any]]:
    """Per target and series, the most accurate point measured within the target's minutes and how far it stands
    from the target's accuracy (percentage points; ≥ 0 where it meets it); ``None`` figures where no point of the
    series is that fast."""
    rows = []
    for target in TARGETS:
        for s in series:
            within = [p for p in s.points if p.minutes <= target.minutes]
            best = max(within, key=lambda p: p.accuracy, default=None)
            rows.append({"target": target.label, "record": s.record,
                         "wall_minutes": None if best is None else best.minutes,
                         "test_accuracy": None if best is None else best.accuracy,
                         "gap_points": None if best is None else round(100 * (best.accuracy - target.accuracy), 2)})
    return rows


def anchors(records: list[dict[str, Any]]) -> list[Mark]:
    """The distinct anchors of the frontier records, in the records' order."""
    marks: list[Mark] = []
    for record in filter(is_frontier, records):
        anchor = record["figures"].get("anchor") or {}
        if not isinstance(anchor.get("minutes"), (int, float)) or not isinstance(anchor.get("test_accuracy"),
                                                                                  (int, float)):
            continue
        accuracy, minutes = float(anchor["test_accuracy"]), float(anchor["minutes"])
        source = str(anchor.get("source") or "anchor")
        mark = Mark(minutes, accuracy, f"anchor: {source}, {percent(accuracy)} in {minutes:g} min")
        if mark not in marks:
            marks.append(mark)
    return marks


def percent(accuracy: float) -> str:
    """``0.9345`` as ``93.45 %``."""
    return f"{100 * accuracy:.2f} %"


def point_label(point: Point) -> str:
    """A point's label: its test accuracy, and its budget when the record names one."""
    return percent(point.accuracy) + (f" ({point.budget:g}-min budget)" if point.budget is not None else "")


def draw_series(ax: Any, series: list[Series], right: float) -> None:
    """Each series as a line with a marker per point, each point labelled with its accuracy and budget."""
    for i, line in enumerate(series):
        color = COLORS[i % len(COLORS)]
        ax.plot([p.minutes for p in line.points], [100 * p.accuracy for p in line.points], marker="o",
                markersize=6, linewidth=1.5, color=color, label=line.label, gid=f"series-{line.record}")
        for j, point in enumerate(line.points):
            # below the point, to its right; in the right half of the plot, to its left (clear of the edge)
            left = point.minutes > 0.55 * right
            ax.annotate(point_label(point), (point.minutes, 100 * point.accuracy), textcoords="offset points",
                        xytext=(-7 if left else 7, -13), ha="right" if left else "left", fontsize=9,
                        color=color, gid=f"label-{line.record}-{j}")


def draw_marks(ax: Any, marks: list[Mark]) -> None:
    """Each anchor as a labelled diamond; each target as a hollow star at the end of a dotted line from x = 0."""
    for i, mark in enumerate(marks):
        ax.plot([mark.minutes], [100 * mark.accuracy], linestyle="none", marker="D", markersize=7,
                color="#1a202c", label=mark.label, gid=f"anchor-{i}")
        ax.annotate(f"anchor {percent(mark.accuracy)}", (mark.minutes, 100 * mark.accuracy),
                    textcoords="offset points", xytext=(8, -3), fontsize=9, color="#1a202c",
                    gid=f"anchor-label-{i}")
    for i, target in enumerate(TARGETS):
        ax.plot([0, target.minutes], [100 * target.accuracy] * 2, linestyle=":", linewidth=1.2, color="#718096",
                gid=f"target-line-{i}")
        ax.plot([target.minutes], [100 * target.accuracy], linestyle="none", marker="*", markersize=11,
                markerfacecolor="none", markeredgecolor="#4a5568", markeredgewidth=1.2, label=target.label,
                gid=f"target-{i}")


def frontier_svg(records: list[dict[str, Any]]) -> str | None:
    """The frontier figure of ``records`` as SVG text, or None when none of them is a frontier record."""
    series = frontier_series(records)
    if not series:
        return None
    import matplotlib
    from matplotlib.figure import Figure

    marks = anchors(records)
    accuracies = [100 * p.accuracy for s in series for p in s.points] + [100 * m.accuracy for m in (*marks, *TARGETS)]
    minutes = [p.minutes for s in series for p in s.points] + [m.minutes for m in (*marks, *TARGETS)]
    right = 1.12 * max(minutes)
    low, high = min(accuracies), max(accuracies)
    pad = max(0.3, 0.15 * (high - low))
    with matplotlib.rc_context({"svg.hashsalt": "edgekd-frontier", "svg.fonttype": "none", "font.size": 10,
                                "axes.formatter.useoffset": False}):
        fig = Figure(figsize=(6.6, 4.6), layout="constrained")
        ax = fig.add_subplot()
        draw_series(ax, series, right)
        draw_marks(ax, marks)
        ax.set_xlim(0, right)
        ax.set_ylim(low - pad, high + pad)
        ax.set_xlabel("wall minutes of the run from scratch (measured)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title("Budget frontier: test accuracy of the validation-selected artifact")
        ax.grid(alpha=0.3)
        fig.legend(loc="outside lower center", ncols=2, fontsize=8.5, frameon=False)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return buffer.getvalue()
