"""ONNX Runtime on an Android device over adb: the ONNX model pushed to the target's per-run folder, the user's own
perf binary (``onnxruntime_perf_test`` built for Android, named by ``access.perf_binary``) run on it, its report parsed
(:func:`edgekd.runtimes.onnxruntime.native.parse_onnxruntime_perf_test`), the folder removed.

onnxruntime_perf_test reports min/max/P50/P90/P95/P99 and the mean but no spread, so ``stability`` is not available
on this path (the report says so); its inputs are generated on the device (``-I``).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from edgekd.config import BenchConfig
from edgekd.errors import RuntimeFailure, UserError
from edgekd.runtimes.onnxruntime.native import TOOL, parse_onnxruntime_perf_test
from edgekd.runtimes.onnxruntime.runner import PROVIDER_ALIASES
from edgekd.runtimes.onnxruntime.spec import NAME

#: device-profile provider names → onnxruntime_perf_test ``-e`` values
PERF_TEST_PROVIDERS = {"CPUExecutionProvider": "cpu", "XnnpackExecutionProvider": "xnnpack",
                       "NnapiExecutionProvider": "nnapi", "QNNExecutionProvider": "qnn"}


def bench(target: Any, model: Path, options: dict[str, Any], cfg: BenchConfig) -> dict[str, Any]:
    """The perf binary's figures for ``model`` as manifest metrics; ``target`` is the adb connection
    (:class:`edgekd.bench.adb.AdbTarget`: ``access``, ``label``, ``folder``, ``adb(...)``, ``shell([...])``)."""
    providers = [PROVIDER_ALIASES.get(p.lower(), p) for p in options.get("providers", [])]
    threads = options.get("threads")
    if model.suffix != ".onnx":
        raise UserError(f"{model}: adb targets run ONNX models through {target.access.perf_binary}")
    wanted = providers or ["CPUExecutionProvider"]
    if any(p not in PERF_TEST_PROVIDERS for p in wanted):
        raise UserError(f"{target.label}: onnxruntime_perf_test runs {', '.join(PERF_TEST_PROVIDERS)}, "
                        f"not {providers}")
    engines = [PERF_TEST_PROVIDERS[p] for p in wanted]
    remote_model = str(PurePosixPath(target.folder) / "model.onnx")
    assert target.access.perf_binary is not None  # the schema requires it for adb
    command = [target.access.perf_binary, "-e", engines[0], "-m", "times", "-r", str(cfg.runs), "-s", "-I"]
    if threads:
        command += ["-x", str(threads)]
    target.shell(["mkdir", "-p", target.folder])
    try:
        target.adb("push", str(model), remote_model)
        done = target.shell([*command, remote_model], timeout=cfg.max_seconds + 120)
        props = {key: target.shell(["getprop", key]).stdout.strip()
                 for key in ("ro.product.model", "ro.build.version.release", "ro.product.cpu.abi")}
    finally:
        target.shell(["rm", "-rf", target.folder])
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise RuntimeFailure(f"{target.label}: {target.access.perf_binary} failed on {model.name} "
                             f"(exit {done.returncode}: {last})")
    try:
        report = parse_onnxruntime_perf_test(done.stdout)
    except ValueError as exc:
        raise RuntimeFailure(f"{target.label}: {exc}") from None
    latency = report.get("latency_ms", {})
    if "p50" not in latency:
        raise RuntimeFailure(f"{target.label}: {target.access.perf_binary} printed no P50 (was -s honoured?)")
    stats = {"p50": latency["p50"], "p90": latency.get("p90"), "p95": latency.get("p95"),
             "p99": latency.get("p99"), "mean": report["mean_ms"], "min": latency.get("min"),
             "max": latency.get("max"), "runs": report.get("requests", cfg.runs)}
    return {"latency_ms": stats, "batch_size": 1, "threads": threads, "target": target.label,
            "compute": {"runtime": NAME, "providers": providers, "perf_binary": target.access.perf_binary,
                        "command": command, "inference_precision": "as the graph (perf binary)"},
            "stability_note": "not available (onnxruntime_perf_test reports no spread)",
            "environment": {"android": props}, "native": {"tool": TOOL, **report}}
