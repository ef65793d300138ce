#!/usr/bin/env bash
# gpu_check.sh: edgekd's TensorRT / CUDA check, in one call of at most 10 minutes, on a machine with an NVIDIA GPU
# and no network (the lent device machine: CUDA torch installed, no pydantic, OpenVINO or NNCF).
#
# Usage (from the repository root):
#     bash benchmarks/gpu_check.sh [OUT_DIR]
# OUT_DIR defaults to $OUT when set, else gpu-check-<UTC time>/. Environment: PYTHON (the interpreter with CUDA
# torch; default python3), EDGEKD_WHEELS (wheel folder; default benchmarks/wheels), GPU_CHECK_SECONDS (time budget of
# the whole script; default 540).
#
# What it does, each step under `timeout` and within the budget (a step that would start too late is skipped):
#   1. env:      nvidia-smi, the Python, torch and its CUDA device -> env.log, torch.json
#   2. venv:     a virtual environment in /tmp with --system-site-packages (keeps the machine's CUDA torch)
#   3. install:  every requirement of pyproject.toml (dependencies, the tensorrt extra, pytest) that the environment
#                lacks, one by one, with `pip install --no-index --find-links EDGEKD_WHEELS` (onnxruntime-gpu first;
#                the CPU onnxruntime only where no onnxruntime is there) -> install.log, packages.json
#   4. tests:    pytest of tests/test_tensorrt.py and the local pre-flight tests -> pytest-*.log, pytest-*.xml
#   5. validate: `edgekd validate pipelines/quickstart.yaml --device cuda-gpu` (the pre-flight says what is missing)
#   6. smoke:    `edgekd run pipelines/quickstart.yaml --smoke` on cuda-gpu, or, when its pre-flight fails, on a
#                profile of the cuda-gpu runtimes that are importable here (cuda-available.yaml) -> smoke.log, smoke-run/
#   7. summary.json, written last (also when steps failed).
#
# summary.json (schema 1):
#   {"schema": 1, "started": ISO-8601, "finished": ISO-8601, "seconds": float, "budget_seconds": int,
#    "gpu": ["<name>, <driver>, <memory>", ...] or [], "torch": {"version", "cuda", "cuda_available", "devices": [...]},
#    "packages": {"<requirement>": {"status": "present" | "installed" | "missing", "version": str | null,
#                                   "reason": str | null}},
#    "not_installed": ["<requirement>: <reason>", ...],
#    "steps": [{"name", "command", "rc", "seconds", "timed_out", "skipped", "log"}],
#    "tests": {"<name>": {"tests", "failures", "errors", "skipped"} | null},
#    "smoke": {"profile", "rc", "preflight", "stages": [{"name", "status", "seconds"}],
#              "artifacts": [{"name", "runtime", "precision", "status", "reason", "accuracy", "p50_ms",
#                             "layer_precisions"}]} | null}
# Every log named in "steps" lies beside it in OUT_DIR; the smoke run's folder (manifest.json, report.md, logs/) in
# OUT_DIR/smoke-run.
#
# Filling the wheel folder (on a machine with network, for the device machine's Python version and platform; the
# device tool carries at most 64 MiB in all, so only the small pure-Python packages and the core ones fit; CUDA torch
# is already there, and onnxruntime-gpu and tensorrt, hundreds of MiB each, are used only where the image has them):
#     pip download --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 \
#         --platform manylinux2014_x86_64 --platform any -d benchmarks/wheels \
#         pydantic pyyaml typer rich markdown-it-py onnx onnxscript onnxruntime pytest
#     du -sh benchmarks/wheels   # keep it under 64 MiB with the rest of the carried tree
# Then run it with the device tool, carrying the folder (it is git-ignored): carry ["benchmarks/wheels"], command
# "bash benchmarks/gpu_check.sh". scikit-learn (the digits data of the quickstart) and matplotlib (report plots) are
# too large to carry with onnx and onnxruntime; the summary says when they are missing.

set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-${OUT:-$REPO/gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}}"
WHEELS="${EDGEKD_WHEELS:-$REPO/benchmarks/wheels}"
PY="${PYTHON:-python3}"
BUDGET="${GPU_CHECK_SECONDS:-540}"
VENV="$(mktemp -d /tmp/edgekd-gpu-venv.XXXXXX)"
STARTED="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
STEPS="$OUT_DIR/steps.jsonl"
: >"$STEPS"
cd "$REPO" || exit 1

# step NAME LIMIT_SECONDS COMMAND...: run COMMAND with its output in OUT_DIR/NAME.log, record it in steps.jsonl
step() {
    local name=$1 limit=$2
    shift 2
    local log="$OUT_DIR/$name.log" left=$((BUDGET - SECONDS)) start=$SECONDS rc skipped=false
    if ((left < 15)); then
        rc=-1
        skipped=true
        echo "skipped: ${left}s of the budget left" >"$log"
    else
        ((limit > left - 5)) && limit=$((left - 5))
        timeout --kill-after=10 "$limit" bash -c '"$@"' "$name" "$@" >"$log" 2>&1  # functions are exported
        rc=$?
    fi
    "$PY" - "$name" "$rc" "$((SECONDS - start))" "$skipped" "$log" "$*" >>"$STEPS" <<'PY'
import json, sys
name, rc, seconds, skipped, log, command = sys.argv[1:]
print(json.dumps({"name": name, "command": command, "rc": int(rc), "seconds": int(seconds),
                  "timed_out": int(rc) in (124, 137), "skipped": skipped == "true", "log": log.rsplit("/", 1)[-1]}))
PY
    return "$rc"
}

# 1. the machine
machine() {
    nvidia-smi
    echo
    "$PY" -VV
}
export -f machine
export PY
step env 30 machine || true
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$OUT_DIR/gpu.txt" 2>/dev/null || true
"$PY" - >"$OUT_DIR/torch.json" 2>>"$OUT_DIR/env.log" <<'PY' || echo '{}' >"$OUT_DIR/torch.json"
import json
import torch
ok = torch.cuda.is_available()
print(json.dumps({"version": torch.__version__, "cuda": torch.version.cuda, "cuda_available": ok,
                  "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if ok else []}))
PY

# 2. a venv that sees the machine's packages (CUDA torch) and takes the carried wheels
make_venv() {
    "$PY" -m venv --system-site-packages "$VENV" || return 1
    local site
    site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || return 1
    # the image's own site-packages (also when PYTHON is itself a venv's), after the venv's own
    "$PY" -c 'import sysconfig; p = sysconfig.get_paths(); print(p["purelib"]); print(p["platlib"])' >"$site/image.pth"
    cat "$site/image.pth"
}
export -f make_venv
export PY VENV
step venv 60 make_venv || true
VPY="$VENV/bin/python"
[[ -x "$VPY" ]] || VPY="$PY"

# 3. what pyproject.toml asks for, installed offline where a wheel is carried
# run_tests NAME PYTEST-ARGS...: pytest with a JUnit report OUT_DIR/pytest-NAME.xml
run_tests() {
    local name=$1
    shift
    PYTHONPATH="$REPO" "$VPY" -m pytest -q -rs -p no:cacheprovider --junitxml="$OUT_DIR/pytest-$name.xml" "$@"
}
install_all() {
    "$VPY" - "$WHEELS" "$OUT_DIR/packages.json" <<'PY'
import importlib.metadata as md, json, re, subprocess, sys
from pathlib import Path

wheels, out = sys.argv[1], Path(sys.argv[2])
text = Path("pyproject.toml").read_text()
def listed(key):
    block = re.search(key + r"\s*=\s*\[(.*?)\]", text, re.S)
    return re.findall(r'"([^"]+)"', block.group(1)) if block else []
wanted = listed("dependencies") + listed("tensorrt") + ["pytest>=8.0"]
def name(req):
    return re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0]
def version(dist):
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None
packages = {}
for req in wanted:
    dist = name(req)
    candidates = [dist]
    if dist == "onnxruntime":  # the GPU build provides the same module; never both
        if version("onnxruntime-gpu"):
            packages[req] = {"status": "present", "version": "onnxruntime-gpu " + version("onnxruntime-gpu"),
                             "reason": None}
            continue
        candidates = ["onnxruntime-gpu", "onnxruntime"]
    if version(dist):
        packages[req] = {"status": "present", "version": version(dist), "reason": None}
        continue
    reason = None
    for candidate in candidates:
        spec = req.replace(dist, candidate, 1)
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--find-links", wheels,
                               "--disable-pip-version-check", spec], capture_output=True, text=True)
        print(f"$ pip install {spec}\n{done.stdout}{done.stderr}", flush=True)
        if done.returncode == 0:
            packages[req] = {"status": "installed", "version": f"{candidate} {version(candidate)}", "reason": None}
            break
        lines = [l for l in done.stderr.splitlines() if l.strip()]
        reason = lines[-1] if lines else f"pip exit {done.returncode}"
    else:
        packages[req] = {"status": "missing", "version": None, "reason": reason}
out.write_text(json.dumps(packages, indent=1))
PY
}
export -f install_all run_tests
export VPY WHEELS OUT_DIR REPO
step install 240 install_all || true

# 4. the TensorRT tests (they skip, with the builder's reason, where TensorRT or CUDA is missing)
step pytest-tensorrt 180 run_tests tensorrt tests/test_tensorrt.py || true
step pytest-preflight 60 run_tests preflight tests/test_preflight.py -k "local or probe" || true

# 5-6. the pre-flight of cuda-gpu, then a smoke run of the quickstart
PROFILE=cuda-gpu
if ! step validate 60 env PYTHONPATH="$REPO" "$VPY" -m edgekd validate pipelines/quickstart.yaml --device cuda-gpu; then
    PROFILE="$OUT_DIR/cuda-available.yaml"
    "$VPY" - "$PROFILE" >>"$OUT_DIR/validate.log" 2>&1 <<'PY' || PROFILE=cuda-gpu
import importlib.util, sys
from pathlib import Path
import yaml
from edgekd.capabilities import RUNTIME_SPECS
profile = yaml.safe_load(Path("devices/cuda-gpu.yaml").read_text())
profile["name"] = "cuda-available"
profile["runtimes"] = [r for r in profile["runtimes"]
                       if importlib.util.find_spec(RUNTIME_SPECS[r["runtime"]].module) is not None
                       and not (r.get("providers") and "CUDAExecutionProvider" in r["providers"]
                                and "CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers())]
if not profile["runtimes"]:
    profile["runtimes"] = [{"runtime": "torch", "device": "cuda:0", "precisions": ["fp32"]}]
Path(sys.argv[1]).write_text(yaml.safe_dump(profile, sort_keys=False))
print("smoke profile:", profile["runtimes"])
PY
fi
step smoke 300 env PYTHONPATH="$REPO" "$VPY" -m edgekd run pipelines/quickstart.yaml --device "$PROFILE" --smoke \
    --out "$OUT_DIR/smoke-run" || true

# 7. the summary
"$PY" - "$OUT_DIR" "$STARTED" "$SECONDS" "$BUDGET" "$PROFILE" <<'PY'
import json, sys, xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

out, started, seconds, budget, profile = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
def load(name, default):
    try:
        return json.loads((out / name).read_text())
    except (OSError, ValueError):
        return default
steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines() if line.strip()]
packages = load("packages.json", {})
tests = {}
for name in ("tensorrt", "preflight"):
    try:
        suite = ET.parse(out / f"pytest-{name}.xml").getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        tests[name] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    except (OSError, ET.ParseError, AttributeError):
        tests[name] = None
smoke = None
manifest = load("smoke-run/manifest.json", None)
if manifest is not None:
    smoke = {"profile": profile, "rc": next((s["rc"] for s in steps if s["name"] == "smoke"), None),
             "preflight": manifest.get("preflight"),
             "stages": [{k: s.get(k) for k in ("name", "status", "seconds")} for s in manifest.get("stages", [])],
             "artifacts": [{"name": a.get("name"), "runtime": a.get("runtime"), "precision": a.get("precision"),
                            "status": a.get("status"), "reason": a.get("reason"),
                            "accuracy": a.get("metrics", {}).get("accuracy"),
                            "p50_ms": (a.get("metrics", {}).get("latency_ms") or {}).get("p50"),
                            "layer_precisions": a.get("metrics", {}).get("compute", {}).get("layer_precisions")}
                           for a in manifest.get("artifacts", [])]}
gpu = [line.strip() for line in (out / "gpu.txt").read_text().splitlines() if line.strip()] \
    if (out / "gpu.txt").exists() else []
summary = {"schema": 1, "started": started, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "seconds": seconds, "budget_seconds": budget, "gpu": gpu, "torch": load("torch.json", {}),
           "packages": packages,
           "not_installed": [f"{req}: {p['reason']}" for req, p in packages.items() if p["status"] == "missing"],
           "steps": steps, "tests": tests, "smoke": smoke}
(out / "summary.json").write_text(json.dumps(summary, indent=1))
print(json.dumps({k: summary[k] for k in ("gpu", "not_installed", "tests")}, indent=1))
print("steps:", ", ".join(f"{s['name']}={s['rc']}" for s in steps), f"({seconds} s); all in {out}")
PY
rm -rf "$VENV"
