"""An Android device reached over adb: a per-run folder on the device and the user's own native benchmark binary
(``access.perf_binary``), run by the artifact's runtime package (its ``adb`` module's ``bench(target, model,
options, cfg)``), which pushes the model, runs the binary, parses its report and removes the folder.

``adb`` is called with argument lists; the device-side command is built with ``shlex.quote`` around every word.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

from edgekd.capabilities import RUNTIME_SPECS
from edgekd.config import BenchConfig
from edgekd.config.device import Access
from edgekd.errors import RuntimeFailure, UserError
from edgekd.runtimes import has_part, runtime_part


def adb_runtimes() -> list[str]:
    """The runtimes whose package measures artifacts over adb (an ``adb`` module)."""
    return [name for name in RUNTIME_SPECS if has_part(name, "adb")]


class AdbTarget:
    """``access.kind: adb``: a device folder and a shell, for the runtime package that measures the artifact."""

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

    def bench(self, model: Path, runtime: str, options: dict[str, Any], cfg: BenchConfig) -> dict[str, Any]:
        """The figures of ``model`` in ``runtime`` (runner ``options``: providers, threads) as manifest metrics."""
        if runtime not in adb_runtimes():
            raise UserError(f"{model.name}: adb devices measure {', '.join(adb_runtimes())} artifacts, not {runtime}")
        metrics: dict[str, Any] = runtime_part(runtime, "adb").bench(self, model, options, cfg)
        return metrics
