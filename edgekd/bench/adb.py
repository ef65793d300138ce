"""An Android device reached over adb: the ONNX model pushed to a per-run folder, the user's own perf binary
(``onnxruntime_perf_test`` built for Android, named by ``access.perf_binary``) run on it, its report parsed
(:func:`edgekd.bench.parsers.parse_onnxruntime_perf_test`), the folder removed.

``adb`` is called with argument lists; the device-side command is built with ``shlex.quote`` around every word.
onnxruntime_perf_test reports min/max/P50/P90/P95/P99 and the mean but no spread, so ``stability`` is not available
on this path (the report says so); its inputs are generated on the device (``-I``).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

from edgekd.bench.parsers import parse_onnxruntime_perf_test
from edgekd.config import BenchConfig
from edgekd.config.device import Access
from edgekd.errors import RuntimeFailure, UserError

#: device-profile provider names → onnxruntime_perf_test ``-e`` values
PERF_TEST_PROVIDERS = {"CPUExecutionProvider": "cpu", "XnnpackExecutionProvider": "xnnpack",
                       "NnapiExecutionProvider": "nnapi", "QNNExecutionProvider": "qnn"}


class AdbTarget:
    """``access.kind: adb`` as a runner of one model through the device's perf binary."""

    def __init__(self, access: Access, timeout: float = 120) -> None:
        if access.kind != "adb" or not access.perf_binary:
            raise UserError("access: an adb target needs access.kind 'adb' and access.perf_binary")
        if shutil.which("adb") is None:
            raise UserError("adb not found on PATH (install Android platform-tools)")
        self.access = access
        self.timeout = timeout
        self.label = f"adb://{access.serial or 'default'}"
        self.folder = str(PurePosixPath(access.workdir) / f"run-{uuid.uuid4().hex[:12]}")

    def adb(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        """``adb [-s serial] ARGS``; a failure of adb itself (no device, unauthorised) is a UserError."""
        serial = ["-s", self.access.serial] if self.access.serial else []
        try:
            done = subprocess.run(["adb", *serial, *args], capture_output=True, text=True,
                                  timeout=timeout or self.timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeFailure(
                f"{self.label}: adb {args[0]} did not finish within {timeout or self.timeout:.0f} s") from None
        if done.returncode != 0 and args[0] != "shell":
            last = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}").splitlines()[-1]
            raise UserError(f"{self.label}: adb {args[0]} failed ({last})")
        return done

    def shell(self, words: list[str], timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        return self.adb("shell", shlex.join(words), timeout=timeout)

    def bench(self, model: Path, providers: list[str], threads: int | None, cfg: BenchConfig) -> dict[str, Any]:
        """The perf binary's figures for ``model`` as manifest metrics."""
        if model.suffix != ".onnx":
            raise UserError(f"{model}: adb targets run ONNX models through {self.access.perf_binary}")
        wanted = providers or ["CPUExecutionProvider"]
        if any(p not in PERF_TEST_PROVIDERS for p in wanted):
            raise UserError(f"{self.label}: onnxruntime_perf_test runs {', '.join(PERF_TEST_PROVIDERS)}, "
                            f"not {providers}")
        engines = [PERF_TEST_PROVIDERS[p] for p in wanted]
        remote_model = str(PurePosixPath(self.folder) / "model.onnx")
        assert self.access.perf_binary is not None  # the schema requires it for adb
        command = [self.access.perf_binary, "-e", engines[0], "-m", "times", "-r", str(cfg.runs), "-s", "-I"]
        if threads:
            command += ["-x", str(threads)]
        self.shell(["mkdir", "-p", self.folder])
        try:
            self.adb("push", str(model), remote_model)
            done = self.shell([*command, remote_model], timeout=cfg.max_seconds + 120)
            props = {key: self.shell(["getprop", key]).stdout.strip()
                     for key in ("ro.product.model", "ro.build.version.release", "ro.product.cpu.abi")}
        finally:
            self.shell(["rm", "-rf", self.folder])
        if done.returncode != 0:
            last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
            raise RuntimeFailure(f"{self.label}: {self.access.perf_binary} failed on {model.name} "
                                 f"(exit {done.returncode}: {last})")
        try:
            report = parse_onnxruntime_perf_test(done.stdout)
        except ValueError as exc:
            raise RuntimeFailure(f"{self.label}: {exc}") from None
        latency = report.get("latency_ms", {})
        if "p50" not in latency:
            raise RuntimeFailure(f"{self.label}: {self.access.perf_binary} printed no P50 (was -s honoured?)")
        stats = {"p50": latency["p50"], "p90": latency.get("p90"), "p95": latency.get("p95"),
                 "p99": latency.get("p99"), "mean": report["mean_ms"], "min": latency.get("min"),
                 "max": latency.get("max"), "runs": report.get("requests", cfg.runs)}
        return {"latency_ms": stats, "batch_size": 1, "threads": threads, "target": self.label,
                "compute": {"runtime": "onnxruntime", "providers": providers, "perf_binary": self.access.perf_binary,
                            "command": command, "inference_precision": "as the graph (perf binary)"},
                "stability_note": "not available (onnxruntime_perf_test reports no spread)",
                "environment": {"android": props}, "native": {"tool": "onnxruntime_perf_test", **report}}
