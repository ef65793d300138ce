"""Part of benchmarks/ablation/parallel.sh: gather the split ablation sub-runs of each group (what each copy's
finished ablation stage recorded; of an interrupted one, RUNS/<group>-<tag><seed>/cache/ablation/*/result.json,
before content-keyed sub-runs RUNS/<group>-<tag><seed>/ablation/**/result.json) and tabulate them with edgekd's own
summarize / grid_check.

Usage: python benchmarks/ablation/merge.py RUNS OUTDIR
"""
import json
import sys
from pathlib import Path

from edgekd.distill.ablation import GRID_PREFIX, grid_check, summarize


def copy_runs(copy: Path) -> list[dict]:
    """One copy's sub-run results: those its finished `ablation` stage recorded (only the budget it ran with, when
    RUNS was reused with another), else every finished sub-run in its folders (the stage was interrupted)."""
    manifest = copy / "manifest.json"
    if manifest.exists():
        for stage in json.loads(manifest.read_text())["stages"]:
            if stage["name"] == "ablation" and "runs" in stage.get("info", {}):
                return stage["info"]["runs"]
    return [json.loads(p.read_text()) for pattern in ("cache/ablation/*/result.json", "ablation/**/result.json")
            for p in sorted(copy.glob(pattern))]


runs_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
for group, order in (("r20", ["no-kd", "kd", "dkd"]), ("r56", ["kd", "takd", "ta-grid"])):
    base = runs_dir / group / "manifest.json"
    if not base.exists():
        continue
    manifest = json.loads(base.read_text())
    stages = {s["name"]: s for s in manifest["stages"]}
    runs = [run for copy in sorted(runs_dir.glob(f"{group}-*/")) for run in copy_runs(copy)]
    rows = []
    for variant in order:
        if variant == "ta-grid":
            rows += sorted({r["variant"] for r in runs if r["variant"].startswith(GRID_PREFIX)})
        elif any(r["variant"] == variant for r in runs):
            rows.append(variant)
    complete = [v for v in rows if len({r["seed"] for r in runs if r["variant"] == v}) == 3]
    table = summarize(runs, rows) if rows else []
    selection = stages.get("select-assistant", {}).get("info", {})
    grid = None
    grid_rows = [r for r in table if r["variant"].startswith(GRID_PREFIX) and r["variant"] in complete]
    if selection and grid_rows and GRID_PREFIX + selection["selected"] in complete:
        grid = grid_check(grid_rows, selection["selected"])
    teacher = stages["train-teacher"]["info"]
    summary = {"group": group, "complete_rows": complete, "table": table, "grid": grid,
               "selection": selection, "teacher": teacher, "runs": runs,
               "stage_seconds": {s["name"]: s.get("seconds") for s in manifest["stages"]},
               "provenance": manifest.get("provenance")}
    (out / f"{group}-table.json").write_text(json.dumps(summary, indent=1, default=str))
    for row in table:
        std = "n/a" if row["std"] is None else f"{row['std']:.4f}"
        print(f"{group} {row['variant']:>18}: {row['mean']:.4f} ± {std}  {row['accuracies']}")
    print(f"{group} grid: {grid}")
