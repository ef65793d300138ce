"""The frontier figure on the results page: drawn from the frontier records, byte-stable, checked like the page."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import frontier_plot  # noqa: E402
import results_page  # noqa: E402
from frontier_plot import Mark, Point, Series  # noqa: E402
from records import read_records  # noqa: E402

SVG = "{http://www.w3.org/2000/svg}"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"


def frontier_record(name: str, recipe: str, points: list[tuple[float, float, float]]) -> dict[str, Any]:
    """A frontier record as ``frontier.py`` writes it, with ``points`` as (budget, wall minutes, test accuracy)."""
    return {
        "name": name, "title": f"Budget frontier of {recipe}", "command": f"python benchmarks/frontier.py {recipe}",
        "commit": "abc123", "dirty": False, "date": "2026-01-02T03:04:05+00:00",
        "machine": {"cpu": "Some CPU", "cores": 2},
        "figures": {"recipe": recipe, "device": "x86-cpu", "smoke": False,
                    "points": [{"budget_minutes": b, "wall_minutes": m, "test_accuracy": a, "exit_code": 0}
                               for b, m, a in points],
                    "anchor": {"test_accuracy": 0.929, "minutes": 38.0, "source": "by hand"}},
        "notes": "",
    }


DEPLOY = frontier_record("frontier-deploy", "fmnist-deploy", [(45.0, 37.52, 0.9345), (20.0, 17.78, 0.9198)])
FM = frontier_record("frontier-fm", "fmnist-fm", [(90.0, 84.2, 0.9391)])
OTHER = {"name": "other", "title": "Not a frontier", "figures": {"points": [{"x": 1}], "wall_seconds": 3.0}}


def test_series_and_anchor_come_from_the_records() -> None:
    assert frontier_plot.frontier_series([OTHER, DEPLOY, FM]) == [
        Series("frontier-deploy", "fmnist-deploy on x86-cpu", (Point(17.78, 20.0, 0.9198), Point(37.52, 45.0, 0.9345))),
        Series("frontier-fm", "fmnist-fm on x86-cpu", (Point(84.2, 90.0, 0.9391),)),
    ]
    # both records name the same anchor: it is drawn once
    assert frontier_plot.anchors([DEPLOY, FM]) == [Mark(38.0, 0.929, "anchor: by hand, 92.90 % in 38 min")]
    assert frontier_plot.point_label(Point(84.2, 90.0, 0.9391)) == "93.91 % (90-min budget)"


def markers(root: ET.Element, gid: str) -> list[tuple[float, float]]:
    """The (x, y) of the markers drawn in the SVG group ``gid``."""
    group = next(g for g in root.iter(f"{SVG}g") if g.get("id") == gid)
    return [(float(u.get("x", "nan")), float(u.get("y", "nan"))) for u in group.iter(f"{SVG}use")
            if u.get(XLINK_HREF, "").startswith("#m")]


def texts(root: ET.Element, prefix: str) -> list[str]:
    return [t.text or "" for g in root.iter(f"{SVG}g") if (g.get("id") or "").startswith(prefix)
            for t in g.iter(f"{SVG}text")]


def test_the_svg_draws_the_records_points_anchor_and_targets() -> None:
    root = ET.fromstring(frontier_plot.frontier_svg([OTHER, DEPLOY, FM]) or "")
    deploy, fm = markers(root, "series-frontier-deploy"), markers(root, "series-frontier-fm")
    anchor, targets = markers(root, "anchor-0"), markers(root, "target-0") + markers(root, "target-1")
    assert len(deploy) == 2 and len(fm) == 1 and len(anchor) == 1 and len(targets) == 2
    # one affine map from (minutes, accuracy %) to SVG coordinates for every mark: fit it on the deploy series'
    # two points, then every other mark must land where the map puts its values (y grows downwards in SVG)
    (x0, y0), (x1, y1) = deploy
    sx, sy = (x1 - x0) / (37.52 - 17.78), (y1 - y0) / (93.45 - 91.98)
    assert sx > 0 and sy < 0

    def at(minutes: float, percent: float) -> tuple[float, float]:
        return x0 + sx * (minutes - 17.78), y0 + sy * (percent - 91.98)

    expected = [at(84.2, 93.91), at(38.0, 92.9), at(45.0, 93.5), at(90.0, 94.0)]
    for (x, y), (ex, ey) in zip(fm + anchor + targets, expected):
        assert abs(x - ex) < 0.01 and abs(y - ey) < 0.01
    assert texts(root, "label-frontier-deploy") == ["91.98 % (20-min budget)", "93.45 % (45-min budget)"]
    assert texts(root, "label-frontier-fm") == ["93.91 % (90-min budget)"]
    assert texts(root, "anchor-label") == ["anchor 92.90 %"]
    legend = " ".join(texts(root, "legend"))
    for label in ("fmnist-deploy on x86-cpu", "fmnist-fm on x86-cpu", "anchor: by hand, 92.90 % in 38 min",
                  "target 93.5 % in 45 min", "target 94.0 % in 90 min"):
        assert label in legend


def test_the_svg_is_byte_stable_and_undated() -> None:
    first = frontier_plot.frontier_svg([DEPLOY, FM])
    assert first is not None and first == frontier_plot.frontier_svg(copy.deepcopy([DEPLOY, FM]))
    assert "<dc:date>" not in first and "matplotlib.org" not in first


def test_no_frontier_record_no_figure(tmp_path: Path) -> None:
    assert frontier_plot.frontier_svg([OTHER]) is None
    assert list(results_page.outputs([OTHER], tmp_path / "results.md")) == [tmp_path / "results.md"]
    assert "Budget frontier" not in results_page.page([OTHER])


def test_the_page_embeds_the_figure_and_names_its_records(tmp_path: Path) -> None:
    files = results_page.outputs([DEPLOY, FM], tmp_path / "results.md")
    assert list(files) == [tmp_path / "results.md", tmp_path / "figures" / "frontier.svg"]
    text = files[tmp_path / "results.md"]
    assert "](figures/frontier.svg)" in text
    assert "[frontier-deploy](#frontier-deploy), [frontier-fm](#frontier-fm)" in text


def test_the_committed_figure_is_up_to_date() -> None:
    records = read_records(ROOT / "results")
    expected = frontier_plot.frontier_svg(records)
    committed = ROOT / "docs" / "figures" / "frontier.svg"
    if expected is None:
        assert not committed.exists()
    else:
        assert committed.read_text() == expected, (
            "docs/figures/frontier.svg is out of date: run python benchmarks/results_page.py")


def test_check_fails_when_the_figure_is_stale(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "frontier-deploy.json").write_text(json.dumps(DEPLOY))
    page = tmp_path / "docs" / "results.md"
    figure = tmp_path / "docs" / "figures" / "frontier.svg"
    script = [sys.executable, str(ROOT / "benchmarks" / "results_page.py"), "--results", str(results),
              "--output", str(page)]
    assert subprocess.run(script, capture_output=True, timeout=120).returncode == 0
    assert subprocess.run([*script, "--check"], capture_output=True, timeout=120).returncode == 0
    deploy_only = figure.read_text()
    # a second frontier record: the page and the figure both change; put the old figure back beside the new page
    (results / "frontier-fm.json").write_text(json.dumps(FM))
    assert subprocess.run(script, capture_output=True, timeout=120).returncode == 0
    assert figure.read_text() != deploy_only
    figure.write_text(deploy_only)
    stale = subprocess.run([*script, "--check"], capture_output=True, text=True, timeout=120)
    assert stale.returncode == 1
    assert "frontier.svg is out of date" in stale.stderr and "results.md is out of date" not in stale.stderr
    figure.unlink()
    missing = subprocess.run([*script, "--check"], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "frontier.svg is out of date" in missing.stderr


def test_the_page_says_how_far_each_record_stands_from_each_target(tmp_path: Path) -> None:
    gaps = frontier_plot.target_gaps(frontier_plot.frontier_series([DEPLOY, FM]))
    by = {(g["target"], g["record"]): g for g in gaps}
    # by hand: 93.45 % at 37.52 min is 0.05 below 93.5 %; within 90 min it is still the deploy record's best point
    assert by[("target 93.5 % in 45 min", "frontier-deploy")]["gap_points"] == -0.05
    assert by[("target 94.0 % in 90 min", "frontier-deploy")]["gap_points"] == -0.55
    assert by[("target 94.0 % in 90 min", "frontier-fm")]["gap_points"] == -0.09  # 93.91 % at 84.2 min
    assert by[("target 93.5 % in 45 min", "frontier-fm")]["gap_points"] is None  # no fm point within 45 min
    text = results_page.outputs([DEPLOY, FM], tmp_path / "results.md")[tmp_path / "results.md"]
    assert "| target 93.5 % in 45 min | [frontier-deploy](#frontier-deploy) | 37.52 | 0.9345 | -0.05 |" in text
    assert "| target 93.5 % in 45 min | [frontier-fm](#frontier-fm) | — | — | no point this fast |" in text
