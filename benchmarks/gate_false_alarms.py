"""How often does ``edgekd check`` fail an unchanged model, and does it still catch a real slowdown?

One quickstart run (``--smoke`` unless ``--run`` names another) is baselined in session 0 (``edgekd baseline``).
Then ``--sessions`` sessions, ``--interval`` seconds apart, each run, as separate ``edgekd check`` processes:

- the unchanged run against the baseline's numbers (machine reference) and against the baseline's run
  (``--baseline-run``, both timed in one session): every failure is a false alarm;
- a slower candidate, the run with its ``student-onnx-fp32`` replaced by a deeper student (``--slow-model``, ResNet-14
  by default, exported like the student), in both ways: its latency row must say ``regression`` every time.

Each session's rows are appended to ``WORK/sessions.jsonl`` as they come; the summary goes to
``results/gate-false-alarms.json`` (:mod:`records`). The raw ratio of every unchanged artifact (what the gate judged
before the machine reference: two sessions' latencies compared directly) is kept, with how often its interval would
have failed the gate.

    nice -n 10 python benchmarks/gate_false_alarms.py --sessions 10 --interval 210 --work /tmp/gate-fa
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from records import write_record

ARTIFACT = "student-onnx-fp32"


def edgekd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgekd", *args], capture_output=True, text=True, timeout=900)


def make_slow(run: Path, slow: Path, model: str, width: float) -> None:
    """A copy of ``run`` whose ``student-onnx-fp32`` is ``model`` (random weights, same input), manifest updated."""
    import torch

    from edgekd.export.onnx import export_onnx
    from edgekd.models import create
    from edgekd.pipeline.hashing import describe_output

    shutil.copytree(run, slow)
    manifest = json.loads((slow / "manifest.json").read_text())
    art = next(a for a in manifest["artifacts"] if a["name"] == ARTIFACT)
    path = slow / art["path"]
    torch.manual_seed(0)
    export_onnx(create(model, num_classes=10, in_channels=1, width=width).eval(), (0.5,), (0.25,),
                torch.rand(1, 1, 8, 8), path, opset=17, dynamic_batch=True)
    art.update(describe_output(slow, path))
    (slow / "manifest.json").write_text(json.dumps(manifest))


def check(run: Path, baseline: Path, out: Path, *extra: str) -> dict[str, Any]:
    result = edgekd("check", str(run), "--baseline", str(baseline), "--json", str(out), *extra)
    if result.returncode not in (0, 1):
        raise SystemExit(f"edgekd check exited {result.returncode}: {result.stderr.strip()}")
    rows = json.loads(out.read_text())["rows"]
    return {"exit": result.returncode,
            "latency": {r["artifact"]: r["figures"] for r in rows
                        if r["metric"].startswith("latency") and r["verdict"] != "not judged"}}


def session(i: int, work: Path, run: Path, slow: Path, baseline: Path) -> dict[str, Any]:
    started = time.time()
    out = {"session": i, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))}
    for name, target in (("unchanged", run), ("slow", slow)):
        out[f"{name}_reference"] = check(target, baseline, work / f"s{i}-{name}-ref.json")
        out[f"{name}_same_session"] = check(target, baseline, work / f"s{i}-{name}-sess.json", "--baseline-run",
                                            str(run))
    out["seconds"] = round(time.time() - started, 1)
    return out


def summarise(sessions: list[dict[str, Any]], tol: float) -> dict[str, Any]:
    def latency_verdicts(key: str) -> list[dict[str, str]]:
        return [{a: f["verdict"] for a, f in s[key]["latency"].items()} for s in sessions]

    unchanged = {k: sum(s[k]["exit"] != 0 for s in sessions) for k in ("unchanged_reference",
                                                                       "unchanged_same_session")}
    raw = [f for s in sessions for f in s["unchanged_reference"]["latency"].values()]
    caught = {k: sum(v.get(ARTIFACT) == "regression" for v in latency_verdicts(k))
              for k in ("slow_reference", "slow_same_session")}
    slowdown = [s["slow_same_session"]["latency"][ARTIFACT]["ratio"] for s in sessions]
    return {
        "sessions": len(sessions), "latency_tol_pct": tol,
        "first_session": sessions[0]["time"], "last_session": sessions[-1]["time"],
        "false_alarms": {"machine_reference": unchanged["unchanged_reference"],
                         "same_session": unchanged["unchanged_same_session"]},
        "raw_cross_session": {
            "artifact_checks": len(raw),
            "would_fail": sum(f["raw_low"] > 1 + tol / 100 or f["raw_high"] < 1 - tol / 100 for f in raw),
            "raw_ratio_range": [min(f["raw"] for f in raw), max(f["raw"] for f in raw)],
            "machine_ratio_range": [min(f["machine"] for f in raw), max(f["machine"] for f in raw)],
            "normalised_ratio_range": [min(f["ratio"] for f in raw), max(f["ratio"] for f in raw)],
            "normalised_interval_range": [min(f["low"] for f in raw), max(f["high"] for f in raw)]},
        "slow_candidate": {"caught_machine_reference": caught["slow_reference"],
                           "caught_same_session": caught["slow_same_session"],
                           "slowdown_same_session": [min(slowdown), max(slowdown)],
                           "slowdown_machine_reference": [
                               min(s["slow_reference"]["latency"][ARTIFACT]["ratio"] for s in sessions),
                               max(s["slow_reference"]["latency"][ARTIFACT]["ratio"] for s in sessions)]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=12, help="check sessions after the baseline (>= 10)")
    parser.add_argument("--interval", type=float, default=300.0, help="seconds between sessions")
    parser.add_argument("--work", type=Path, required=True, help="folder for the run, baseline and checks")
    parser.add_argument("--run", type=Path, default=None, help="a finished quickstart run (default: a smoke run)")
    parser.add_argument("--slow-model", default="resnet14", help="the slower candidate's student model")
    parser.add_argument("--slow-width", type=float, default=1.0)
    args = parser.parse_args()
    if args.sessions < 1:
        raise SystemExit("--sessions must be >= 1")
    args.work.mkdir(parents=True, exist_ok=True)
    run = args.run or args.work / "run"
    if args.run is None and not (run / "manifest.json").exists():
        made = edgekd("run", "pipelines/quickstart.yaml", "--device", "x86-cpu", "--out", str(run), "--smoke")
        if made.returncode != 0:
            raise SystemExit(f"quickstart smoke run failed: {made.stderr.strip()[-500:]}")
    slow = args.work / "slow"
    if not slow.exists():
        make_slow(run, slow, args.slow_model, args.slow_width)
    baseline = args.work / "baseline.json"
    made = edgekd("baseline", str(run), "-o", str(baseline))
    if made.returncode != 0:
        raise SystemExit(f"edgekd baseline failed: {made.stderr.strip()}")
    log = args.work / "sessions.jsonl"
    sessions = []
    for i in range(1, args.sessions + 1):
        if i > 1:
            time.sleep(args.interval)
        sessions.append(session(i, args.work, run, slow, baseline))
        with log.open("a") as handle:
            handle.write(json.dumps(sessions[-1]) + "\n")
        print(json.dumps({k: v for k, v in summarise(sessions, 10.0).items()}), flush=True)
    figures = summarise(sessions, 10.0)
    figures["slow_candidate"]["model"] = f"{args.slow_model} width {args.slow_width} (baseline: resnet8 width 1)"
    figures["interval_s"] = args.interval
    figures["per_session"] = sessions
    write_record("gate-false-alarms", title="edgekd check of an unchanged quickstart run over time: false alarms, "
                 "and a slower student caught", figures=figures,
                 notes="Default tolerances (latency 10 %, 95 % bootstrap interval). Machine shared with other jobs. "
                 "raw_cross_session: the two sessions' latencies compared directly, as the gate did before the "
                 "machine reference.")


if __name__ == "__main__":
    main()
