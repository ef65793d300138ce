"""Shared fixtures: the repository paths, a quiet torch, helpers to run or start the CLI in a subprocess, and one to
check a run directory's files against its manifest with the real ``sha256sum -c``."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_fmnist = pytest.mark.skipif(not (FMNIST_DIR / "train-images-idx3-ubyte.gz").exists(),
                                  reason="Fashion-MNIST IDX files not in /usr/share/datasets/fashion-mnist "
                                         "(apt-get install dataset-fashion-mnist)")
"""Skip marker of the tests that run a Fashion-MNIST recipe."""


@pytest.fixture(autouse=True, scope="session")
def _few_threads() -> None:
    torch.set_num_threads(2)


def run_cli(*args: str, cwd: Path = ROOT, timeout: float = 1500, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Run `python -m edgekd.cli ARGS` as a user would; capture its output."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "edgekd.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def start_cli(*args: str) -> subprocess.Popen[str]:
    """Start `python -m edgekd.cli ARGS` as from a terminal, to be stopped with Ctrl-C (SIGINT). A background job of a
    non-interactive shell (a backgrounded CI) inherits SIGINT ignored and Python keeps it ignored; a terminal delivers
    it, so the child gets the default disposition and Python installs its KeyboardInterrupt handler."""
    return subprocess.Popen([sys.executable, "-m", "edgekd.cli", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def sha256sum_check(run_dir: Path, manifest: dict, list_file: Path) -> subprocess.CompletedProcess[str]:
    """Write every artifact's ``files`` as a ``sha256sum`` list to ``list_file`` and run ``sha256sum -c`` on it in
    ``run_dir`` (the peer tool, not our hashing code, decides)."""
    if shutil.which("sha256sum") is None:
        pytest.skip("sha256sum (GNU coreutils) is not on PATH")
    entries = [f for art in manifest["artifacts"] for f in art["files"]]
    assert entries, "the manifest lists no files"
    list_file.write_text("".join(f"{f['sha256']}  {f['path']}\n" for f in entries))
    return subprocess.run(["sha256sum", "-c", str(list_file)], cwd=run_dir, capture_output=True, text=True)
