"""The report's measurement section and the selected artifact's per-layer chart, from a manifest built by hand."""

from __future__ import annotations

from pathlib import Path

from edgekd.bench import device_runner as dr
from edgekd.report.measurement import layers_plot, measurement_section


def _manifest() -> dict:
    stats = dr.summarize([1_000_000, 1_100_000, 3_000_000])
    layers = [{"layer": "Multiply_1", "module": "net.features.1", "op_type": "Convolution", "time_ms": 0.05},
              {"layer": "logits", "module": None, "op_type": "FullyConnected", "time_ms": 0.02}]
    common = {"latency_ms": stats, "stability": dr.stability(stats, 0.1), "cold_start": {"cold_start_ms": 12.5},
              "memory": {"peak_rss_mb": 80.4}, "target": "ssh://pi@pi5.local:22",
              "environment": {"cpu": {"model": "Cortex-A76"}, "usable_cpus": 4, "load_average": [0.1, 0.2, 0.3]}}
    return {"selected": "b", "artifacts": [
        {"name": "a", "metrics": {**common, "energy": "energy: not available (no RAPL)"}},
        {"name": "b", "metrics": {**common, "layers": layers,
                                  "energy": {"mj_per_inference": 0.5, "mean_power_w": 3.0}}},
        {"name": "c", "metrics": {"accuracy": 0.9}}]}  # not benchmarked: no row


def test_measurement_section_flags_unstable_and_says_why_energy_is_missing() -> None:
    text = "\n".join(measurement_section(_manifest(), {}))
    assert "| a | ssh://pi@pi5.local:22 | 1.1000 |" in text and "**unstable**" in text  # cv of (1, 1.1, 3) ms > 10 %
    assert "0.500 mJ/inference (3.0 W)" in text and "- energy: not available (no RAPL)" in text
    assert "| c |" not in text and "Cortex-A76" in text


def test_layer_chart_of_the_selected_artifact(tmp_path: Path) -> None:
    path = layers_plot(_manifest(), tmp_path / "layers.png")
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "plots/layers.png" in "\n".join(measurement_section(_manifest(), {"layers": path}))
    assert layers_plot({**_manifest(), "selected": "a"}, tmp_path / "none.png") is None  # a has no profile
