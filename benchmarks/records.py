"""Results as data: every benchmark or reference run writes one JSON record under ``results/``.

A record holds what a reader needs to trust a figure and to reproduce it::

    {"name": "gate-false-alarms", "title": "...", "command": "python benchmarks/...", "commit": "<git sha>",
     "dirty": false, "date": "2026-12-07T13:50:00+00:00", "machine": {"cpu": "...", "flags": [...], "cores": 2,
     "memory_gib": 23.4, "python": "3.11.7"}, "figures": {...}, "notes": "..."}

``figures`` is free-form JSON owned by the script that measured it; ``docs/results.md`` is generated from the
records (``python benchmarks/results_page.py``), so the docs quote no figure that no command wrote. Usage::

    from records import write_record        # benchmarks/ is on sys.path when a script runs from it
    write_record("gate-false-alarms", title="...", figures={...})
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
_FLAGS_OF_INTEREST = re.compile(r"^(avx\w*|amx\w*|fma|f16c|sse4_2|neon|asimd\w*|sve\w*)$")


def machine() -> dict[str, Any]:
    """CPU model, the instruction-set flags that change runtimes' kernels, core count, memory and Python version."""
    cpu, flags = platform.processor() or platform.machine(), []
    try:
        info = Path("/proc/cpuinfo").read_text()
        model = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
        cpu = model.group(1).strip() if model else cpu
        line = re.search(r"^(flags|Features)\s*:\s*(.+)$", info, re.M)
        flags = sorted({f for f in line.group(2).split() if _FLAGS_OF_INTEREST.match(f)}) if line else []
    except OSError:
        pass
    memory = None
    try:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {"cpu": cpu, "flags": flags, "cores": os.cpu_count(), "memory_gib": memory,
            "python": platform.python_version(), "system": platform.system(), "arch": platform.machine()}


def commit() -> tuple[str | None, bool]:
    """The checkout's commit and whether it has uncommitted changes to tracked files (None outside git)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    try:
        return git("rev-parse", "HEAD"), bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        return None, False


def write_record(name: str, *, title: str, figures: dict[str, Any], command: str | None = None,
                 notes: str = "", out_dir: Path = RESULTS) -> Path:
    """Write ``results/<name>.json`` atomically and return its path. ``command`` defaults to this process's own
    command line (``python benchmarks/x.py ...``)."""
    if not _NAME.match(name):
        raise ValueError(f"record name {name!r}: lower-case letters, digits, '.' and '-' only")
    sha, dirty = commit()
    record = {
        "name": name, "title": title,
        "command": command or shlex.join(["python", *_relative_argv()]),
        "commit": sha, "dirty": dirty,
        "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "machine": machine(), "figures": figures, "notes": notes,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    with tempfile.NamedTemporaryFile("w", dir=out_dir, prefix=f".{name}.", suffix=".tmp", delete=False) as tmp:
        json.dump(record, tmp, indent=2, sort_keys=False)
        tmp.write("\n")
    os.replace(tmp.name, path)
    return path


def read_records(out_dir: Path = RESULTS) -> list[dict[str, Any]]:
    """Every record under ``out_dir``, sorted by name."""
    return [json.loads(p.read_text()) for p in sorted(out_dir.glob("*.json"))]


def _relative_argv() -> list[str]:
    argv = list(sys.argv)
    try:
        argv[0] = str(Path(argv[0]).resolve().relative_to(ROOT))
    except ValueError:
        pass
    return argv
