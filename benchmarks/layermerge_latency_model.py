"""LayerMerge's in-context latency model against measurement: predicted vs measured latency of every plan.

For each student, ``edgekd run pipelines/fmnist-layermerge.yaml --device DEVICE`` runs up to the prune stage (export,
quantize, evaluate, bench and report switched off with ``--set <stage>=null``); the prune stage times every table
entry in context (:mod:`edgekd.prune.context`), plans every method at every budget, then times each plan's merged
network beside the unpruned one. This script reads the prune stage's record (``prune/stage.json``)
and writes, per student and plan, the predicted latency (``M + Σ Δ``), the measured one, their relative error, the
cause the stage names where it is above 10 %, and the error with the prediction scaled by ``R_p / M`` (``R_p`` the
unpruned network timed beside the plan: the error had the machine kept one speed). Students:

- ``resnet14``: the recipe as it is (ResNet-14 on Fashion-MNIST, budgets 0.9 / 0.7 / 0.5, both baselines);
- ``mobilenetv2``: the MobileNetV2 variant of the recipe's header, ``--set 'student.model={name: mobilenetv2_x0_5,
  kwargs: {small_input: false}}'`` with ``prune.importance.mode=proxy`` and ``prune.importance.steps=5``
  (52 layers, half width).

A second call with the same ``--out`` re-uses every finished stage (``edgekd run``'s cache), so it only reads.
``--set KEY=VALUE`` adds a recipe override for every student (e.g. ``prune.latency.statistic=min``, which re-runs
the prune stage only) and ``--name`` names the record.
The full measurement (on a quiet machine, nothing else running; writes ``results/layermerge-latency-model.json``)::

    python benchmarks/layermerge_latency_model.py --device x86-cpu --out runs/layermerge-latency-model

A quick check of the whole path (``edgekd run --smoke`` on the digits data set, ResNet-14 only; the figures are
noise, so the record goes under ``--out``, never ``results/``)::

    python benchmarks/layermerge_latency_model.py --smoke --out /tmp/layermerge-latency-smoke
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from records import RESULTS, ROOT, write_record

RECIPE = ROOT / "pipelines" / "fmnist-layermerge.yaml"
NAME = "layermerge-latency-model"
#: a prediction within this relative error of its measurement holds
TOLERANCE = 0.10
#: stages after prune that the latency model does not need
AFTER_PRUNE = ("export", "quantize", "evaluate", "bench", "report")
STUDENTS: dict[str, list[str]] = {
    "resnet14": [],
    "mobilenetv2": ["student.model={name: mobilenetv2_x0_5, kwargs: {small_input: false}}",
                    "prune.importance.mode=proxy", "prune.importance.steps=5"],
}


def run_args(student: str, device: str, out: Path, *, smoke: bool, extra: Sequence[str] = ()) -> list[str]:
    """The ``edgekd run`` command line of one student (``extra``: further ``--set`` items, e.g. the table's
    statistic)."""
    sets = [*STUDENTS[student], *extra, *(f"{stage}=null" for stage in AFTER_PRUNE)]
    if smoke:
        sets.append("data={name: digits}")
    args = [sys.executable, "-m", "edgekd", "run", str(RECIPE), "--device", device, "--out", str(out)]
    for item in sets:
        args += ["--set", item]
    return args + (["--smoke"] if smoke else [])


def plan_figures(info: dict[str, Any]) -> dict[str, Any]:
    """Per plan: predicted, measured, relative error and cause; with the unpruned reference and a summary."""
    plans = [{"method": r["method"], "budget": r["budget"], "predicted_ms": r["predicted_ms"],
              "measured_ms": r["measured_ms"], "relative_error": r["relative_error"], "cause": r["error_cause"],
              "reference_ms": r["reference_ms"], "drift_corrected_error": r.get("drift_corrected_error"),
              "kept_convs": len(r["kept_convs"]), "merged_depth": r["merged_depth"]} for r in info["results"]]
    errors = [abs(p["relative_error"]) for p in plans]
    return {"runtime": info["runtime"], "precision": info["precision"], "statistic": info["statistic"],
            "batch_size": info["batch_size"], "depth": info["depth"], "entries": info["entries"],
            "latency_model": info["latency_model"], "unpruned_ms": info["unpruned_measured_ms"],
            "reference_timings_ms": info["reference_timings_ms"], "reference_spread": info["reference_spread"],
            "ratio_noise": info.get("ratio_noise"), "confirmation": info.get("confirmation"),
            "overhead_ms": info["overhead_ms"], "seconds": info.get("seconds"), "plans": plans,
            "max_abs_relative_error": max(errors, default=None),
            "within_tolerance": sum(e <= TOLERANCE for e in errors), "plans_total": len(plans)}


def measure(student: str, device: str, out: Path, *, smoke: bool, extra: Sequence[str] = ()) -> dict[str, Any]:
    """Run (or re-use) one student's pipeline up to prune and return its figures (SystemExit on a failed run)."""
    run_dir = out / student
    args = run_args(student, device, run_dir, smoke=smoke, extra=extra)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    print("$", " ".join(args), flush=True)
    code = subprocess.run(args, cwd=ROOT, env=env).returncode
    record = run_dir / "prune" / "stage.json"
    if code not in (0, 1) or not record.is_file():
        raise SystemExit(f"{student}: edgekd run exited {code} without a prune record ({record})")
    info = json.loads(record.read_text())["info"]
    return {"student": student, "sets": [*STUDENTS[student], *extra], "run_dir": str(run_dir), **plan_figures(info)}


def show(figures: dict[str, Any]) -> None:
    print(f"\n{figures['student']}: unpruned {figures['unpruned_ms']:.4f} ms ({figures['statistic']}, median of "
          f"{len(figures['reference_timings_ms'])}, p10–p90 spread {100 * figures['reference_spread']:.1f} %), "
          f"confirmation {figures['confirmation']}, "
          f"{figures['within_tolerance']}/{figures['plans_total']} plans within {100 * TOLERANCE:.0f} %")
    for p in figures["plans"]:
        corrected = "—" if p["drift_corrected_error"] is None else f"{100 * p['drift_corrected_error']:+6.1f} %"
        print(f"  {p['method']:>11} {p['budget']:>6}  predicted {p['predicted_ms']:.4f}  measured "
              f"{p['measured_ms']:.4f}  {100 * p['relative_error']:+6.1f} % (drift-corrected {corrected})  "
              f"{p['cause'] or ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="x86-cpu")
    parser.add_argument("--out", type=Path, required=True, help="run directories go to OUT/<student>")
    parser.add_argument("--students", nargs="+", choices=sorted(STUDENTS), default=None,
                        help="default: both (--smoke: resnet14)")
    parser.add_argument("--smoke", action="store_true", help="edgekd run --smoke on digits; record under --out")
    parser.add_argument("--set", dest="extra", action="append", default=[],
                        help="a further recipe override for every student, e.g. prune.latency.statistic=min")
    parser.add_argument("--name", default=NAME, help=f"record name (default {NAME})")
    args = parser.parse_args()
    students = args.students or (["resnet14"] if args.smoke else list(STUDENTS))
    results = [measure(s, args.device, args.out, smoke=args.smoke, extra=args.extra) for s in students]
    for figures in results:
        show(figures)
    figures = {"recipe": str(RECIPE.relative_to(ROOT)), "device": args.device, "smoke": args.smoke,
               "tolerance": TOLERANCE, "students": results}
    title = "LayerMerge in-context latency model: predicted vs measured latency of every plan"
    path = write_record(f"{args.name}-smoke" if args.smoke else args.name, title=title, figures=figures,
                        out_dir=args.out if args.smoke else RESULTS,
                        notes="prune stage only; measured = each plan's merged network timed after the table, "
                              "interleaved with the unpruned network")
    print(f"\nrecord: {path}")


if __name__ == "__main__":
    main()
