"""The pre-flight probe: what a target's own Python has of numpy and the runtime modules a device profile lists.

Self-contained (the standard library and :mod:`importlib` only; numpy is itself one of the modules probed), so
:mod:`edgekd.bench.preflight` sends this file's text to a board as the standard input of ``python3 - MODULE...`` in one
ssh call, and calls :func:`probe` in-process for this machine. It prints one JSON object::

    {"python": "3.11.2", "executable": "/usr/bin/python3", "machine": "aarch64",
     "modules": {"numpy": {"version": "1.26.4"},
                 "onnxruntime": {"version": "1.20.1", "providers": ["CPUExecutionProvider"]},
                 "openvino": {"error": "ModuleNotFoundError: No module named 'openvino'"}}}

A module that has ``get_available_providers`` (ONNX Runtime) also lists the execution providers it can run.
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
from typing import Any


def _version(module: Any, name: str) -> str | None:
    version = getattr(module, "__version__", None)
    if version is not None:
        return str(version)
    try:
        from importlib.metadata import version as dist_version

        return dist_version(name)
    except Exception:  # no distribution metadata (a system package): the version stays unknown
        return None


def probe(modules: list[str]) -> dict[str, Any]:
    """This Python's version, executable and machine, and for numpy and each of ``modules`` its version (and
    execution providers) or the first line of the error its import raised."""
    found: dict[str, dict[str, Any]] = {}
    for name in ["numpy", *[m for m in modules if m != "numpy"]]:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # ImportError, or OSError from a missing native library (libnvinfer, libcudart)
            lines = str(exc).strip().splitlines()
            found[name] = {"error": f"{type(exc).__name__}: {lines[0] if lines else 'no message'}"}
            continue
        entry: dict[str, Any] = {"version": _version(module, name)}
        providers = getattr(module, "get_available_providers", None)
        if callable(providers):
            entry["providers"] = [str(p) for p in providers()]
        found[name] = entry
    return {"python": platform.python_version(), "executable": sys.executable, "machine": platform.machine(),
            "modules": found}


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1:])))
