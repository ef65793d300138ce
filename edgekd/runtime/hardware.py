"""Whether this host meets a capability's hardware requirement (``requires`` in :mod:`edgekd.capabilities`).

Back ends are imported only to answer: ``bf16`` asks the precision policy (:mod:`edgekd.runtime.precision`);
``install`` asks the runtime's own package (its ``requirement`` module's ``unavailable()``), e.g. TensorRT for an
importable TensorRT >= 10 and a CUDA device.
"""

from __future__ import annotations

import importlib

from edgekd.capabilities import Capability
from edgekd.runtime.precision import bf16_unsupported
from edgekd.runtimes import runtime_module


def install_unavailable(runtime: str) -> str | None:
    """Why ``runtime``'s artifacts cannot be built and run on this host (one line), or None when they can."""
    problem: str | None = importlib.import_module(runtime_module(runtime, "requirement")).unavailable()
    return problem


def unmet_requirement(row: Capability, device: str) -> str | None:
    """Why ``row`` cannot be built and run on ``device`` of this host (one line), or None when it can."""
    if row.requires == "bf16":
        return bf16_unsupported(row.runtime, device)
    if row.requires == "install":
        return install_unavailable(row.runtime)
    return None
