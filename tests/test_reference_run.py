"""benchmarks/reference_run.py: a run directory's ablation table becomes part of the record, as the stage wrote it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from edgekd.distill.ablation import summarize

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from reference_run import ablation_figures, run_figures  # noqa: E402


def _runs(variant: str, best: list[float], last: list[float]) -> list[dict]:
    return [{"variant": variant, "seed": seed, "test_accuracy": b, "last_test_accuracy": lt, "chain": variant}
            for seed, (b, lt) in enumerate(zip(best, last, strict=True))]


def test_the_ablation_table_is_recorded_with_best_and_last_epoch_and_the_spread_rule(tmp_path: Path) -> None:
    runs = _runs("no-kd", [0.930, 0.932, 0.934], [0.929, 0.931, 0.933]) + \
        _runs("kd", [0.936, 0.938, 0.940], [0.935, 0.937, 0.939])
    table = summarize(runs, ["no-kd", "kd"])
    (tmp_path / "ablation").mkdir()
    (tmp_path / "ablation" / "stage.json").write_text(json.dumps({"info": {
        "epochs": 50, "seeds": [0, 1, 2], "statistic": "mean ± sample standard deviation", "table": table}}))
    (tmp_path / "manifest.json").write_text(json.dumps({"recipe": "abl", "device": "x86-cpu", "stages": []}))
    figures = run_figures(tmp_path, 1.0, 0)
    assert figures["ablation"] == ablation_figures(tmp_path)
    no_kd, kd = figures["ablation"]["rows"]
    # by hand: means 0.932 and 0.938, both standard deviations 0.002; gain 0.006 > 0.002
    assert no_kd["mean"] == pytest.approx(0.932) and no_kd["std"] == pytest.approx(0.002)
    assert kd["gain"] == pytest.approx(0.006) and kd["finding"] is True and no_kd["finding"] is None
    assert kd["last_mean"] == pytest.approx(0.937) and kd["last_accuracies"] == [0.935, 0.937, 0.939]
    (tmp_path / "ablation" / "stage.json").unlink()  # a run without an ablation stage records none
    assert "ablation" not in run_figures(tmp_path, 1.0, 0)
