"""A reference run as data: run ``edgekd run`` and write a record of what it measured (``results/<name>.json``).

Usage::

    python benchmarks/reference_run.py quickstart --device x86-cpu --out runs/quickstart --name quickstart-x86
    python benchmarks/reference_run.py fmnist-deploy --device x86-cpu --out runs/fmnist --name fmnist-deploy-x86 \\
        --set seed=1

The record holds the wall time of this call, the compute seconds of every stage as recorded when the stage was
computed (a stage found cached keeps the seconds of the call that computed it, from its ``stage.json``), and per
artifact its format, precision, bytes, parameters and MACs, test and validation accuracy where the manifest has them,
and p50/p90 latency; then the selected artifact and the split that chose it, and the ablation's table where the
recipe has one (``python benchmarks/reference_run.py benchmarks/ablation/r20.yaml ...``). The exit code of
``edgekd run`` is recorded and returned: a run that fails a budget (exit 1) is still a measurement; bad input (exit 2)
writes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from records import write_record


def stage_seconds(run_dir: Path, manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per stage that ran or was cached: its status in this call and the seconds it took when it was computed."""
    stages: dict[str, dict[str, Any]] = {}
    for entry in manifest.get("stages", []):
        if entry["status"] == "skipped":
            continue
        record_file = run_dir / entry["name"] / "stage.json"
        computed = entry.get("seconds")
        if entry["status"] == "cached" and record_file.is_file():
            computed = json.loads(record_file.read_text()).get("seconds", computed)
        stages[entry["name"]] = {"status": entry["status"], "seconds": computed}
    return stages


def validation_accuracy(metrics: dict[str, Any]) -> float | None:
    """The artifact's accuracy on the validation split, where the manifest records one."""
    value = metrics.get("val_accuracy")
    return float(value) if isinstance(value, (int, float)) else None


def artifact_figures(artifact: dict[str, Any]) -> dict[str, Any]:
    """What a reader compares between artifacts: format, precision, size, model size, accuracy, latency."""
    metrics, info = artifact.get("metrics", {}), artifact.get("info", {})
    latency = metrics.get("latency_ms") or {}
    figures: dict[str, Any] = {
        "runtime": artifact.get("runtime"), "format": artifact.get("format"), "precision": artifact.get("precision"),
        "bytes": artifact.get("bytes"), "parameters": info.get("parameters"), "macs": info.get("macs"),
        "test_accuracy": metrics.get("accuracy"), "validation_accuracy": validation_accuracy(metrics),
        "p50_ms": latency.get("p50"), "p90_ms": latency.get("p90"),
    }
    if artifact.get("status", "ok") != "ok":
        figures["status"] = f"{artifact['status']}: {artifact.get('reason', '')}"
    return {k: v for k, v in figures.items() if v is not None}


def ablation_figures(run_dir: Path) -> dict[str, Any] | None:
    """The ablation stage's table, where the run has one: per variant its test accuracy by seed, mean ± sample
    standard deviation at the best epoch on validation and at the last epoch, the gain over no-KD and whether it
    exceeds the spread (:func:`edgekd.distill.ablation.summarize`)."""
    record = run_dir / "ablation" / "stage.json"
    info = json.loads(record.read_text()).get("info", {}) if record.is_file() else {}
    if "table" not in info:
        return None
    keep = ("variant", "accuracies", "mean", "std", "last_accuracies", "last_mean", "last_std", "gain", "finding")
    return {"epochs": info["epochs"], "seeds": info["seeds"], "statistic": info["statistic"],
            "rule": "finding: |gain| over no-kd exceeds the larger of the two rows' standard deviations",
            "rows": [{k: row[k] for k in keep} for row in info["table"]]}


def run_figures(run_dir: Path, wall_seconds: float, exit_code: int) -> dict[str, Any]:
    """The record's figures from a finished run directory."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    selection = manifest.get("selection") or {}
    ablation = ablation_figures(run_dir)
    return {
        "recipe": manifest["recipe"], "device": manifest["device"], "smoke": manifest.get("smoke", False),
        "seed": manifest.get("seed"), "overrides": manifest.get("overrides", []),
        "edgekd_version": manifest.get("edgekd_version"), "exit_code": exit_code,
        "wall_seconds": round(wall_seconds, 1),
        "stage_seconds": stage_seconds(run_dir, manifest),
        "artifacts": {a["name"]: artifact_figures(a) for a in manifest.get("artifacts", [])},
        "selected": manifest.get("selected"),
        "chosen_on_split": manifest.get("selected_by"),
        "selection_reason": selection.get("reason"),
        **({"ablation": ablation} if ablation is not None else {}),
    }


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="recipe name or YAML file, as `edgekd run` takes it")
    parser.add_argument("--device", required=True, help="device profile name or YAML file")
    parser.add_argument("--out", required=True, type=Path, help="run directory (an existing one is resumed)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="recipe override key=value")
    parser.add_argument("--smoke", action="store_true", help="pass --smoke to edgekd run")
    parser.add_argument("--data-dir", type=Path, help="pass --data-dir to edgekd run (data sets on disk)")
    parser.add_argument("--name", required=True, help="record name: results/<name>.json")
    parser.add_argument("--title", help="record title (default: the recipe on the device)")
    args = parser.parse_args(argv)
    options = [*(f"--set={item}" for item in args.overrides), *(["--smoke"] if args.smoke else []),
               *(["--data-dir", str(args.data_dir)] if args.data_dir else [])]
    command = [sys.executable, "-m", "edgekd", "run", args.recipe, "--device", args.device, "--out", str(args.out),
               *options]
    load_before = _load_average()
    start = time.perf_counter()
    code = subprocess.run(command).returncode
    wall = time.perf_counter() - start
    if code not in (0, 1) or not (args.out / "manifest.json").is_file():
        print(f"error: edgekd run exited {code}; no record written", file=sys.stderr)
        return code or 2
    figures = run_figures(args.out, wall, code)
    # other jobs on the machine stretch every timing: the 1-minute load average beside the wall time says how much
    figures["load_average_1min"] = {"start": load_before, "end": _load_average()}
    shown = shlex.join(["edgekd", "run", args.recipe, "--device", args.device, "--out", str(args.out), *options])
    title = args.title or f"{figures['recipe']} on {figures['device']}" + (" (smoke)" if args.smoke else "")
    path = write_record(args.name, title=title, figures=figures,
                        notes=f"edgekd command: {shown}; wall_seconds is this call's, stage_seconds each stage's "
                              "when it was computed")
    print(f"record: {path}")
    return code


if __name__ == "__main__":
    sys.exit(main())
