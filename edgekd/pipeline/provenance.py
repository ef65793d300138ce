"""Where a run came from: library versions, host, git commit — recorded in the manifest for reproducibility."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from edgekd.capabilities import runtime_libraries

LIBRARIES = tuple(dict.fromkeys((
    "torch", "numpy", "onnx", *runtime_libraries(), "nncf", "torchao", "pydantic", "scikit-learn", "onnxslim",
    "matplotlib",
)))


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries edgekd drives (absent ones left out)."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit() -> str | None:
    """Commit of the edgekd source checkout (None for an installed wheel), with `+dirty` if modified."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def host_info() -> dict[str, Any]:
    """The machine that ran the pipeline."""
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
