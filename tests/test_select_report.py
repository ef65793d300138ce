"""Selection under budgets and objectives, the Pareto front and the report's tables, against hand-made artifacts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgekd.config import SelectConfig
from edgekd.config.device import Budgets
from edgekd.pipeline.artifacts import Artifact
from edgekd.report import plots
from edgekd.report.build import build_html
from edgekd.report.plots import pareto_front
from edgekd.report.tables import markdown_table
from edgekd.stages._selection import budget_failures, rank_key, select_artifact


def art(name: str, accuracy: float | None, p90: float | None, mb: float) -> Artifact:
    """``accuracy`` is the validation accuracy; the test accuracy is ``1 - accuracy``, the reverse order, so a rule
    that read test accuracy would pick differently."""
    metrics: dict = {}
    if accuracy is not None:
        metrics["val_accuracy"], metrics["accuracy"] = accuracy, 1.0 - accuracy
    if p90 is not None:
        metrics["latency_ms"] = {"p50": p90 / 2, "p90": p90, "p99": p90 * 2, "mean": p90}
    return Artifact(name=name, path=f"{name}.onnx", format="onnx", precision="fp32", runtime="onnxruntime",
                    role="student", input={}, bytes=int(mb * 1e6), metrics=metrics)


BUDGETS = Budgets(max_size_mb=1.0, max_latency_ms=5.0, min_accuracy=0.9, latency_stat="p90")


def test_budget_failures_name_each_broken_budget() -> None:
    assert budget_failures(art("ok", 0.95, 4.0, 0.5), BUDGETS) == []
    assert budget_failures(art("big", 0.95, 4.0, 1.5), BUDGETS) == ["size 1.500 MB > 1.0 MB"]
    assert budget_failures(art("slow", 0.95, 6.0, 0.5), BUDGETS) == ["latency p90 6.000 ms > 5.0 ms"]
    assert budget_failures(art("bad", 0.85, 4.0, 0.5), BUDGETS) == ["validation accuracy 0.8500 < 0.9"]
    assert budget_failures(art("unmeasured", None, None, 0.5), BUDGETS) == [
        "latency not measured", "validation accuracy not measured"]


def test_a_macs_budget_reads_the_count_of_the_source_model() -> None:
    budgets = Budgets(max_macs=10_000_000)
    small, large, uncounted = (art(n, 0.95, 4.0, 0.5) for n in ("small", "large", "uncounted"))
    small.info["macs"], large.info["macs"] = 9_350_000, 41_000_000
    assert budget_failures(small, budgets) == []
    assert budget_failures(large, budgets) == ["MACs 41,000,000 > 10,000,000"]
    assert budget_failures(uncounted, budgets) == ["MACs not counted"]


def test_resnet8_on_fashion_mnist_counts_the_macs_of_its_layers() -> None:
    """ResNet-8 (CIFAR layout, 16/32/64 channels) on 1×28×28, by hand: stem 3×3 1→16 at 28×28: 112,896; stage 1
    two 3×3 16→16 at 28×28: 2·1,806,336; stage 2 3×3 16→32 stride 2 at 14×14: 903,168, 3×3 32→32: 1,806,336,
    1×1 shortcut 16→32: 100,352; stage 3 at 7×7: 903,168 + 1,806,336 + 100,352; linear 64→10: 640.
    Total 9,345,920 (issue 12: 9.35 M)."""
    from edgekd.models import count_macs, create

    assert count_macs(create("resnet8", num_classes=10, in_channels=1), (1, 28, 28)) == 9_345_920


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


def q(name: str, accuracy: float, p90: float, nbytes: int, status: str = "ok") -> Artifact:
    """An artifact with the figures of an fmnist-quantize run (accuracy, p90 ms, bytes)."""
    a = art(name, accuracy, p90, nbytes / 1e6)
    a.bytes, a.status = nbytes, status
    return a


FMNIST = [q("student-onnx-int8-qat", 0.8777, 0.105, 82_000), q("student-onnx-int8-ort", 0.8747, 0.036, 30_000),
          q("student-onnx-int8-nncf", 0.8574, 0.030, 29_000), q("student-openvino-fp16", 0.8680, 0.050, 57_000)]
LOOSE = Budgets(max_size_mb=1.0, max_latency_ms=5.0, min_accuracy=0.8)


def test_default_objective_takes_the_fastest_within_half_a_point() -> None:
    chosen = select_artifact(FMNIST, LOOSE, SelectConfig(), device="x86-cpu")
    # nncf is faster still but 2.03 points below the best: outside the 0.5-point drop
    assert chosen.selected is not None and chosen.selected.name == "student-onnx-int8-ort"
    assert chosen.contenders == ["student-onnx-int8-ort", "student-onnx-int8-qat"]
    assert chosen.runner_up == "student-onnx-int8-qat"
    assert "within 0.50 points" in chosen.reason and "2.92× faster" in chosen.reason
    assert "-0.30 points" in chosen.reason


def test_accuracy_objective_keeps_the_old_rule_and_size_takes_the_smallest() -> None:
    best = select_artifact(FMNIST, LOOSE, SelectConfig(objective="accuracy"), device="x86-cpu")
    assert best.selected is not None and best.selected.name == "student-onnx-int8-qat"
    assert best.selected.name == min(FMNIST, key=lambda a: rank_key(a, LOOSE)).name
    small = select_artifact(FMNIST, LOOSE, SelectConfig(objective="size", max_accuracy_drop=0.02), device="d")
    assert small.selected is not None and small.selected.name == "student-onnx-int8-ort"  # nncf: 2.03 > 2 points
    wide = select_artifact(FMNIST, LOOSE, SelectConfig(objective="size", max_accuracy_drop=0.021), device="d")
    assert wide.selected is not None and wide.selected.name == "student-onnx-int8-nncf"


def test_failed_artifacts_are_never_selected() -> None:
    arts = [q("fast-but-failed", 0.99, 0.01, 1000, status="failed"), q("ok", 0.95, 1.0, 2000)]
    chosen = select_artifact(arts, LOOSE, SelectConfig(), device="d")
    assert chosen.selected is not None and chosen.selected.name == "ok"
    assert "1 failed artifact(s) excluded" in chosen.reason and "only contender" in chosen.reason
    none = select_artifact(arts[:1], LOOSE, SelectConfig(), device="d", enforce=False)
    assert none.selected is None


def test_nothing_within_budgets_names_the_closest_miss_and_by_how_much() -> None:
    tight = Budgets(max_size_mb=1.0, max_latency_ms=2.0, min_accuracy=0.9)
    arts = [art("slow", 0.95, 2.5, 0.5), art("bad-and-slow", 0.5, 9.0, 0.5)]
    chosen = select_artifact(arts, tight, SelectConfig(), device="x86-cpu")
    assert chosen.selected is None and not chosen.meets_budgets
    assert chosen.closest is not None and chosen.closest["artifact"] == "slow"
    assert chosen.closest["message"] == ("no artifact meets the budgets of device x86-cpu; closest: slow misses "
                                         "max_latency_ms by 0.500 ms (25.0 % over) (latency p90 2.500 ms > 2.0 ms)")
    smoke = select_artifact(arts, tight, SelectConfig(), device="x86-cpu", enforce=False)
    assert smoke.selected is not None and smoke.selected.name == "slow" and not smoke.meets_budgets
    assert smoke.reason.startswith("smoke run, budgets not enforced")


def test_pareto_front_keeps_only_undominated_points() -> None:
    points = [("a", 1.0, 0.90), ("b", 2.0, 0.95), ("c", 3.0, 0.93), ("d", 0.5, 0.80), ("e", 2.0, 0.94)]
    assert pareto_front(points) == ["d", "a", "b"]


def _plot_axes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, budgets: dict) -> Any:
    """The axes ``accuracy_latency_plot`` draws for two artifacts at accuracies 0.93 and 0.94 under ``budgets``."""
    drawn: dict[str, Any] = {}

    def keep(plt: Any, fig: Any, path: Path) -> Path:
        drawn["ax"] = fig.axes[0]
        return path

    monkeypatch.setattr(plots, "_save", keep)
    manifest = {"recipe": "r", "device": "d", "budgets": budgets, "selected": "a", "artifacts": [
        {"name": n, "metrics": {"accuracy": acc, "latency_ms": {"p50": ms}}} for n, acc, ms in
        (("a", 0.93, 0.1), ("b", 0.94, 0.2))]}
    assert plots.accuracy_latency_plot(manifest, tmp_path / "p.png") == tmp_path / "p.png"
    return drawn["ax"]


def test_a_budget_far_from_every_point_is_a_note_not_a_line_that_squashes_the_axes(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    far = _plot_axes(monkeypatch, tmp_path, {"min_accuracy": 0.8, "max_latency_ms": 5.0, "latency_stat": "p90"})
    low, high = far.get_ylim()
    assert 0.92 < low < 0.93 and 0.94 < high < 0.95  # the points fill the height: 0.8 is not on the axis
    assert not far.lines[1:] and far.get_xlim()[1] < 1.0  # only the Pareto step, no budget lines
    notes = [t.get_text() for t in far.texts]
    assert "accuracy floor 0.8, below the plot" in notes[-1] and "latency budget 5 ms (p90)" in notes[-1]

    near = _plot_axes(monkeypatch, tmp_path, {"min_accuracy": 0.925, "max_latency_ms": 0.5, "latency_stat": "p90"})
    assert len(near.lines) == 3 and near.get_ylim()[0] < 0.925  # step, budget and floor lines; the floor is shown
    assert not any("below the plot" in t.get_text() for t in near.texts)


def timed(name: str, accuracy: float, samples: list[float], nbytes: int) -> Artifact:
    """An artifact with validation ``accuracy``, latency ``samples`` (ms, the bench's ``samples_ms``) and size."""
    a = q(name, accuracy, float(np.quantile(samples, 0.9)), nbytes)
    a.metrics["samples_ms"] = samples
    return a


NO_LIMITS = Budgets()
SERIES = [float(v) for v in np.linspace(1.0, 2.0, 200)]  # spread like a loaded machine's series


def test_a_clear_latency_winner_stays_the_winner_however_accurate_the_rest() -> None:
    fast = timed("fast", 0.90, SERIES, 50_000)
    slow = timed("slow", 0.904, [3 * v for v in SERIES], 10_000)  # 3× slower: far outside any noise
    chosen = select_artifact([slow, fast], NO_LIMITS, SelectConfig(), device="d")
    assert chosen.selected is fast and chosen.runner_up == "slow"
    assert chosen.noise is not None and chosen.noise["within_noise"] == []
    [comparison] = chosen.noise["comparisons"]
    assert comparison["ratio"] == pytest.approx(3.0) and comparison["low"] > 1.0
    assert "within noise" not in chosen.reason


def test_latencies_within_noise_go_to_validation_accuracy_then_size() -> None:
    fastest = timed("fastest", 0.900, SERIES, 50_000)
    close = timed("close", 0.903, [1.001 * v for v in SERIES], 60_000)  # p90 ratio 1.001 by construction
    far = timed("far", 0.904, [3 * v for v in SERIES], 10_000)
    chosen = select_artifact([fastest, close, far], NO_LIMITS, SelectConfig(), device="d")
    assert chosen.selected is close and chosen.runner_up == "fastest"
    assert chosen.contenders == ["close", "fastest", "far"]
    assert chosen.noise is not None and chosen.noise["fastest"] == "fastest"
    assert chosen.noise["within_noise"] == ["close"]
    ratio = {c["artifact"]: c for c in chosen.noise["comparisons"]}["close"]
    assert ratio["ratio"] == pytest.approx(1.001) and ratio["low"] < 1.0 < ratio["high"]
    assert "within noise: close against the fastest fastest" in chosen.reason
    assert "the tie goes to validation accuracy, then size: close wins the tie" in chosen.reason
    # equal validation accuracy: the smaller file takes the tie
    twin = timed("twin", 0.900, [1.001 * v for v in SERIES], 40_000)
    by_size = select_artifact([fastest, twin], NO_LIMITS, SelectConfig(), device="d")
    assert by_size.selected is twin
    # the same order without latency samples: the point statistic decides, as before
    for a in (fastest, twin):
        del a.metrics["samples_ms"]
    assert select_artifact([fastest, twin], NO_LIMITS, SelectConfig(), device="d").selected is fastest


def test_the_selection_record_names_the_validation_split() -> None:
    record = select_artifact(FMNIST, LOOSE, SelectConfig(), device="d").record(SelectConfig())
    assert record["selected_by"] == "validation"


def test_the_ratio_of_quantiles_of_constant_series_is_exact() -> None:
    from edgekd.bench.bootstrap import ratio_of_quantiles

    interval = ratio_of_quantiles([1.0] * 50, [2.0] * 50, 0.9)  # every resample has p90 2 / 1
    assert (interval.ratio, interval.low, interval.high) == (2.0, 2.0, 2.0)
    with pytest.raises(ValueError):
        ratio_of_quantiles([1.0], [1.0], 1.5)


def test_the_report_shows_both_accuracies_and_names_the_split_that_chose() -> None:
    from edgekd.report.build import selection_lines

    arts = [q("a", 0.95, 1.0, 2000), q("b", 0.90, 0.5, 1000)]  # test accuracies 0.05 and 0.10 (see art)
    selection = select_artifact(arts, LOOSE, SelectConfig(objective="accuracy"), device="d")
    manifest = {"budgets": LOOSE.model_dump(), "selected": "a", "selection": selection.record(
        SelectConfig(objective="accuracy")), "artifacts": [{**a.model_dump(), "metrics": {
            **a.metrics, "meets_budgets": True}} for a in arts]}
    text = "\n".join(selection_lines(manifest))
    assert "**Chosen on the validation split**" in text
    assert "| val accuracy (floor) | test accuracy |" in text
    assert "| **a** (selected) | 0.002 ≤ 1.0 | 1.000 ≤ 5.0 | 0.9500 ≥ 0.8 | 0.0500 | meets all |" in text


def test_a_training_line_gives_best_and_last_epoch_and_the_kept_weights_test_accuracy() -> None:
    from edgekd.report.sections import training_line

    info = {"best_epoch": 2, "epochs": 3, "val_accuracy": 0.75, "last_epoch": 3, "last_val_accuracy": 0.625,
            "test_accuracy": 0.7}
    assert training_line("distill", info) == [
        "- `distill`: best epoch 2 of 3 on validation (val accuracy 0.7500, weights kept); last epoch 3, val "
        "accuracy 0.6250; test accuracy of the kept weights 0.7000."]
    older = {"best_epoch": 2, "epochs": 3, "val_accuracy": 0.75}  # a record written before last epochs were kept
    assert training_line("distill", older) == [
        "- `distill`: best epoch 2 of 3 on validation (val accuracy 0.7500, weights kept)."]
