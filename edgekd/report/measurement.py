"""The report's measurement section: how each figure was measured (target, stability, cold start, memory, energy,
environment) and the selected artifact's per-layer profile as a chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.report.plots import _figure, _save
from edgekd.report.tables import markdown_table


def _selected_layers(manifest: dict[str, Any]) -> tuple[str, list[dict[str, Any]]] | None:
    art = next((a for a in manifest["artifacts"] if a["name"] == manifest.get("selected")), None)
    layers = (art or {}).get("metrics", {}).get("layers")
    return (art["name"], layers) if art and isinstance(layers, list) and layers else None


def layers_plot(manifest: dict[str, Any], path: Path) -> Path | None:
    """Horizontal bars of the selected artifact's slowest layers (ms per inference), labelled by PyTorch module."""
    found = _selected_layers(manifest)
    if found is None:
        return None
    name, layers = found
    plt = _figure()
    rows = layers[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    ax.barh([f"{r['module'] or r['layer'][:30]} ({r['op_type']})" for r in rows], [r["time_ms"] for r in rows],
            color="#2b6cb0")
    ax.set_xlabel("ms per inference (runtime profiler)")
    ax.set_title(f"{name}: slowest layers")
    return _save(plt, fig, path)


def _energy(metrics: dict[str, Any]) -> str:
    energy = metrics.get("energy")
    if isinstance(energy, dict):
        return f"{energy['mj_per_inference']:.3f} mJ/inference ({energy['mean_power_w']:.1f} W)"
    return "not available" if energy else "—"


def measurement_section(manifest: dict[str, Any], plots: dict[str, Path]) -> list[str]:
    """Markdown lines: one row per measured artifact, the environment of the first, the layer chart."""
    measured = [a for a in manifest["artifacts"] if isinstance(a.get("metrics", {}).get("stability"), dict)]
    if not measured:
        return []
    rows = []
    for art in measured:
        m = art["metrics"]
        stats = m["latency_ms"]
        rows.append([art["name"], m.get("target", "local"), f"{stats['p50']:.4f}", f"{stats['p95']:.4f}",
                     f"{stats['cv']:.1%}" + (" **unstable**" if m["stability"]["unstable"] else ""),
                     f"{m['cold_start']['cold_start_ms']:.1f}", f"{m['memory']['peak_rss_mb']:.0f}", _energy(m)])
    reasons = sorted({a["metrics"]["energy"] for a in measured if isinstance(a["metrics"].get("energy"), str)})
    env = measured[0]["metrics"].get("environment", {})
    cpu = env.get("cpu", {})
    load = env.get("load_average")
    load_text = ", ".join(f"{v:.2f}" for v in load) if isinstance(load, list) else str(load or "?")
    lines = ["## Measurement", "",
             "Each artifact timed by edgekd's device runner on the target (inputs bound once; warm-up, then timed "
             "calls); cv = std/mean, flagged above the recipe's `bench.cv_threshold`; cold start = session creation "
             "+ first inference in a fresh process; peak RSS of that process.", "",
             markdown_table(["artifact", "target", "p50 ms", "p95 ms", "cv", "cold start ms", "peak RSS MB",
                             "energy"], rows), "",
             f"Environment: {cpu.get('model', '?')}, {env.get('usable_cpus', '?')} usable CPUs, governor "
             f"{env.get('frequency', {}).get('governor', '?')}, load average "
             f"{load_text}, thermal {env.get('thermal_c', '?')}, Jetson {env.get('jetson', '?')}, "
             f"Pi {env.get('pi_throttling', '?')}.",
             "", *[f"- {reason}" for reason in reasons], ""]
    if "layers" in plots:
        lines += ["![per-layer profile of the selected artifact](plots/layers.png)", ""]
    return lines + fleet_section(manifest)


def fleet_section(manifest: dict[str, Any]) -> list[str]:
    """Markdown lines: the p50 of every artifact (rows) on the run's device and each device of the recipe's
    ``bench.fleet`` (columns); "—" where a device offers no runtime for the artifact."""
    fleet = [a for a in manifest["artifacts"] if isinstance(a.get("metrics", {}).get("fleet"), dict)]
    if not fleet:
        return []
    devices = list(dict.fromkeys(name for a in fleet for name in a["metrics"]["fleet"]))
    own = str(manifest.get("device", "this device"))

    def cell(metrics: dict[str, Any] | None) -> str:
        if metrics is None:
            return "—"
        if "error" in metrics:
            return "failed"
        return f"{metrics['latency_ms']['p50']:.4f}" if "latency_ms" in metrics else "—"

    rows = [[a["name"], cell(a["metrics"] if "latency_ms" in a["metrics"] else None),
             *(cell(a["metrics"]["fleet"].get(name)) for name in devices)] for a in fleet]
    return ["### Fleet", "",
            "p50 latency in ms of each artifact on the run's device and on every device of `bench.fleet`, each "
            "timed by the device runner on that device (`metrics.fleet.<device>` in the manifest holds the full "
            "figures).", "",
            markdown_table(["artifact", f"{own} (run's device)", *devices], rows), ""]
