"""The runtime capability table, as data: what edgekd builds and runs for each (runtime, precision) pair.

One row per pair a device profile may list, assembled from the runtime packages (:mod:`edgekd.runtimes`: each
package's ``spec`` module registers its :class:`RuntimeSpec` and rows). Device profiles are validated against it at
load (a pair, a device kind or a profile field the runtime does not take is exit 2 before any stage), stages dispatch
from it (``built_by`` and ``methods``: the exporter or the quantizers that make the artifact), ``validate`` and each
stage's plan say from it why a requested pair is not built here, and ``edgekd zoo runtimes`` prints it. The checks
of hardware requirements that need a back end (bf16 support, a TensorRT install) live in
:mod:`edgekd.runtime.hardware`, keyed by ``requires``.

Adding a runtime, with the full list of files it touches: ``docs/extending.md``.
"""

from __future__ import annotations

from edgekd.runtimes import (
    CAPABILITIES,
    FORMAT_SUFFIXES,
    RUNTIME_SPECS,
    BuiltBy,
    Capability,
    NncfTarget,
    Requirement,
    RuntimeSpec,
)


def capability(runtime: str, precision: str) -> Capability | None:
    """The row for ``(runtime, precision)``, or None when edgekd offers no such artifact."""
    return next((c for c in CAPABILITIES if c.runtime == runtime and c.precision == precision), None)


def offered_precisions(runtime: str) -> tuple[str, ...]:
    """The precisions a device profile may list for ``runtime``, in table order."""
    return tuple(c.precision for c in CAPABILITIES if c.runtime == runtime)


def runtime_libraries() -> tuple[str, ...]:
    """The distributions of every runtime (each spec's ``libraries``), in table order: what a stage that builds or
    runs artifacts of any runtime declares for its cache key."""
    return tuple(dict.fromkeys(lib for spec in RUNTIME_SPECS.values() for lib in spec.libraries))


def default_runtime(fmt: str) -> str:
    """The first runtime in table order that opens artifact format ``fmt`` (an ONNX file: ONNX Runtime)."""
    return next(name for name, spec in RUNTIME_SPECS.items() if fmt in spec.formats)


def device_kind(device: str) -> str:
    """``GPU.1`` → ``gpu``, ``cuda:0`` → ``cuda``: the kind of a runtime device name."""
    return device.replace(":", ".").split(".")[0].lower()


def device_index(device: str) -> int:
    """``cuda:1`` → 1, ``GPU.1`` → 1, ``cuda`` or ``CPU`` → 0: the index of a runtime device name; a ValueError when
    the part after ``:``/``.`` is not a number."""
    _, _, index = device.replace(":", ".").partition(".")
    if not index:
        return 0
    if not index.isdigit():
        raise ValueError(f"device {device!r}: expected KIND or KIND:N with a device number N, e.g. cuda:1")
    return int(index)


__all__ = ["BuiltBy", "CAPABILITIES", "Capability", "FORMAT_SUFFIXES", "NncfTarget", "RUNTIME_SPECS", "Requirement",
           "RuntimeSpec", "capability", "default_runtime", "device_index", "device_kind", "offered_precisions",
           "runtime_libraries"]
