"""Benchmark one artifact on a target (this machine, or a board over ssh) with the device runner, and check what
comes back.

The same device runner runs everywhere: its runtime-neutral core (:mod:`edgekd.bench.device_runner`) and the
runtime's session module (``session`` of :class:`~edgekd.capabilities.RuntimeSpec`, numpy + the runtime only) are
copied into a fresh folder of their own and run from there, locally in a child process (so its peak resident memory
and cold start are the artifact's, not edgekd's, and none of edgekd's folders is on its ``sys.path``) or remotely in
a per-run folder over ssh (:mod:`edgekd.bench.remote`). What the session is opened with and what the host adds to
its description come from the runtime package's ``bench`` module (``settings(options)``, ``compute(path,
options)``). Either way the result is schema-checked (:mod:`edgekd.bench.result`) and turned into the
manifest's ``metrics`` (``latency_ms`` with ``p50/p90/p99/mean`` as before, plus ``p95``, ``std``, ``min``, ``max``,
``cv`` and ``throughput_per_s``; ``stability``, ``energy``, ``cold_start``, ``memory``, ``harness_overhead_ms``,
``environment``, ``batches`` and ``compute``, the settings in force).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from edgekd.bench import device_runner
from edgekd.bench.result import BenchResult, FailedResult, load_result
from edgekd.capabilities import RUNTIME_SPECS
from edgekd.config import BenchConfig
from edgekd.errors import RuntimeFailure, UserError
from edgekd.runtimes import runtime_module

RUNNER_FILE = Path(device_runner.__file__)
RUNNER_NAME = "edgekd_device_runner.py"
"""The name the core is copied under in the runner's folder."""
SESSION_NAME = f"{device_runner.SESSION_MODULE}.py"
"""The name the runtime's session module is copied under, beside the core."""


def session_file(runtime: str) -> Path:
    """The source file of ``runtime``'s device-runner session module, or a UserError where it has none."""
    spec = RUNTIME_SPECS[runtime]
    found = importlib.util.find_spec(spec.session) if spec.session else None
    if found is None or found.origin is None:
        raise UserError(f"runtime {runtime!r} has no device-runner session: its artifacts cannot be benchmarked")
    return Path(found.origin)


class Target(Protocol):
    """Where the device runner runs: a folder to put files in, a way to run it, a way to fetch its result."""

    label: str

    def __enter__(self) -> Target: ...

    def __exit__(self, *exc: object) -> None: ...

    def put(self, local: Path, name: str) -> str:
        """Copy ``local`` into the run folder as ``name``; return the name the runner's spec uses."""

    def run_runner(self, spec_name: str, result_name: str, timeout: float) -> subprocess.CompletedProcess[str]:
        """Run the device runner on ``spec_name``; its ``result_name`` stays in the run folder."""

    def fetch(self, name: str, local: Path) -> None:
        """Copy ``name`` from the run folder to ``local``."""


class LocalTarget:
    """This machine: a temporary run folder, the runner in a child process of this Python."""

    label = "local"

    def __enter__(self) -> LocalTarget:
        self.folder = Path(tempfile.mkdtemp(prefix="edgekd-bench-"))
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def put(self, local: Path, name: str) -> str:
        if local.suffix in {".json", ".py"}:
            shutil.copyfile(local, self.folder / name)
            return name
        return str(local.resolve())  # artifacts are read where they are: nothing to copy on this machine

    def run_runner(self, spec_name: str, result_name: str, timeout: float) -> subprocess.CompletedProcess[str]:
        """The copied runner, run from its own folder: that folder, not edgekd's, is first on its ``sys.path``."""
        return subprocess.run([sys.executable, str(self.folder / RUNNER_NAME), str(self.folder / spec_name),
                               str(self.folder / result_name)], capture_output=True, text=True, timeout=timeout,
                              cwd=self.folder)

    def fetch(self, name: str, local: Path) -> None:
        shutil.copyfile(self.folder / name, local)


def protocol(cfg: BenchConfig) -> dict[str, Any]:
    """The device runner's protocol from a recipe's ``bench`` section."""
    return {"warmup_runs": cfg.warmup, "warmup_seconds": cfg.warmup_seconds, "runs": cfg.runs,
            "min_seconds": cfg.min_seconds, "max_seconds": cfg.max_seconds, "cv_threshold": cfg.cv_threshold}


def _bench_module(runtime: str) -> Any:
    return importlib.import_module(runtime_module(runtime, "bench"))


def runner_settings(runtime: str, options: dict[str, Any]) -> dict[str, Any]:
    """What the device runner opens a session with, from the options edgekd opens the same runtime with locally
    (``edgekd.stages._runtime.runner_options``): the runtime package's ``bench.settings``."""
    settings: dict[str, Any] = _bench_module(runtime).settings(options)
    return settings


def artifact_files(path: Path) -> list[Path]:
    """The files of an artifact: an OpenVINO IR's ``.xml`` and ``.bin``; an ONNX file and its external data."""
    if path.suffix == ".xml":
        return [path, path.with_suffix(".bin")]
    if path.suffix == ".onnx":
        extra = [p for p in path.parent.iterdir() if p.name.startswith(path.name + ".") or p.suffix == ".data"]
        return [path, *sorted(extra)]
    return [path]


def run_timeout(cfg: BenchConfig, batches: int) -> float:
    """Seconds the host waits for the runner: each batch's longest timing and warm-up, plus loading and the rest."""
    return batches * (cfg.max_seconds + cfg.warmup_seconds + 30.0) + 60.0


def bench_artifact(path: Path, runtime: str, options: dict[str, Any], cfg: BenchConfig, target: Target,
                   sample_shape: Sequence[int] | None = None) -> dict[str, Any]:
    """Benchmark ``path`` in ``runtime`` on ``target``; the manifest metrics (see the module docstring).

    A runtime that refuses the artifact is a UserError (exit 2); a crash or a runner that never answers within
    :func:`run_timeout` is a RuntimeFailure (exit 3); both one line naming the target.
    """
    batches = list(dict.fromkeys([cfg.batch_size, *cfg.batch_sizes]))
    timeout = run_timeout(cfg, len(batches))
    with target as where, tempfile.TemporaryDirectory(prefix="edgekd-spec-") as scratch:
        settings = runner_settings(runtime, options)
        where.put(RUNNER_FILE, RUNNER_NAME)
        where.put(session_file(runtime), SESSION_NAME)
        names = [where.put(f, f.name) for f in artifact_files(Path(path))]
        spec = {"artifact": names[0], "runtime": runtime, "import": RUNTIME_SPECS[runtime].module,
                "session": device_runner.SESSION_MODULE, "settings": settings,
                "batch_sizes": batches, "sample_shape": list(sample_shape) if sample_shape else None,
                "protocol": protocol(cfg), "seed": 0, "timeout_s": int(timeout)}
        local_spec = Path(scratch) / "spec.json"
        local_spec.write_text(json.dumps(spec))
        where.put(local_spec, "spec.json")
        try:
            done = where.run_runner("spec.json", "result.json", timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeFailure(f"{where.label}: the device runner did not finish within {timeout:.0f} s "
                                 f"on {Path(path).name}") from None
        local_result = Path(scratch) / "result.json"
        try:
            where.fetch("result.json", local_result)
        except (FileNotFoundError, UserError, RuntimeFailure):
            tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise RuntimeFailure(f"{where.label}: the device runner crashed on {Path(path).name} without a "
                                 f"result (exit {done.returncode}: {tail})") from None
        result = load_result(local_result, where.label)
    if isinstance(result, FailedResult):
        error = UserError if result.error.kind == "load" else RuntimeFailure
        raise error(f"{where.label}: {Path(path).name}: {result.error.message}")
    return to_metrics(result, runtime, options, Path(path), where.label)


def to_metrics(result: BenchResult, runtime: str, options: dict[str, Any], path: Path, label: str
               ) -> dict[str, Any]:
    """The manifest metrics of a checked result; the first batch size is the headline ``latency_ms``."""
    first = result.batches[0]
    compute = {**result.runtime, **_bench_module(runtime).compute(path, options)}
    metrics: dict[str, Any] = {
        "latency_ms": first.latency_ms.model_dump(), "samples_ms": first.samples_ms, "batch_size": first.batch_size,
        "threads": options.get("threads"), "compute": compute, "stability": first.stability.model_dump(),
        "energy": first.energy,
        "cold_start": result.cold_start.model_dump(), "memory": result.memory.model_dump(),
        "harness_overhead_ms": result.harness_overhead_ms.model_dump(), "environment": result.environment,
        "input": result.input, "protocol": result.protocol.model_dump(), "target": label,
        "batches": [b.model_dump(exclude_none=True, exclude={"samples_ms"}) for b in result.batches]}
    if first.runtime_reported_ms is not None:
        metrics["runtime_reported_ms"] = first.runtime_reported_ms.model_dump()
    return metrics
