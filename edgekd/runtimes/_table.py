"""The runtime capability table's types and its registry: each runtime package registers its :class:`RuntimeSpec`
and its :class:`Capability` rows with :func:`register` in its own ``spec`` module; :mod:`edgekd.runtimes` imports
every package's ``spec`` and exposes the assembled table. This module imports nothing of edgekd."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

BuiltBy = Literal["export", "quantize"]
Requirement = Literal["bf16", "install"]
"""``bf16``: the device computes in bf16; ``install``: the runtime package's ``requirement.unavailable()`` is None."""
NncfTarget = Literal["ANY", "CPU", "GPU", "NPU"]


@dataclass(frozen=True)
class RuntimeSpec:
    """Everything the rest of edgekd asks of a runtime by name.

    ``formats``: artifact formats it opens; ``suffixes``: file suffix → artifact format of the files it opens;
    ``device_kinds``: the kinds a profile's ``device:`` may name (compared on the part before ``.``/``:``,
    case-insensitively) and ``default_device``; ``profile_fields``: the profile fields it reads;
    ``quantize_targets``: device kind → the NNCF ``target_device`` whose hardware config its INT8 artifacts follow;
    ``module``: the Python module a device imports to run it (pre-flight, cold start, version); ``install``: how to
    install that module, as the pre-flight's fix says it; ``provider_packages``: execution provider (a profile's
    ``providers``) → the package that ships it, for providers the default package lacks;
    ``session``: the module, numpy + the runtime only, that the device runner copies beside itself to run an
    artifact (``None``: not measured by the device runner), importing only the standard library, numpy, ``module``
    and ``session_imports``; ``libraries``: distributions whose versions enter the cache keys of the stages that
    build or run its artifacts; ``cpu_threaded``: the profile's ``threads`` applies; ``rank``: its place in tables
    and listings; ``symmetric_int8``: its INT8 artifacts need symmetric activations, so a device that runs it gets
    symmetric ONNX Runtime calibration for every runtime (one calibration serves both)."""

    name: str
    formats: tuple[str, ...]
    suffixes: dict[str, str]
    device_kinds: tuple[str, ...]
    default_device: str
    profile_fields: tuple[str, ...]
    module: str
    install: str
    session: str | None
    libraries: tuple[str, ...]
    rank: int
    cpu_threaded: bool = True
    session_imports: tuple[str, ...] = ()
    symmetric_int8: bool = False
    quantize_targets: dict[str, NncfTarget] = field(default_factory=dict)
    provider_packages: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Capability:
    """One (runtime, precision) pair: the artifact ``format``, the stage that builds it (``None``: the torch models
    are measured as they are) with its ``methods`` (exporter or quantizers), and the hardware it ``requires``."""

    runtime: str
    precision: str
    format: str
    built_by: BuiltBy | None
    methods: tuple[str, ...]
    requires: Requirement | None
    note: str


SPECS: dict[str, RuntimeSpec] = {}
ROWS: list[Capability] = []


def register(spec: RuntimeSpec, rows: tuple[Capability, ...]) -> RuntimeSpec:
    """Add ``spec`` and its rows to the table; a second spec of one name, a row of another runtime, a row in a
    format the runtime does not open or a precision listed twice is a programming error."""
    if spec.name in SPECS:
        raise ValueError(f"runtime {spec.name!r} is already registered")
    precisions = [row.precision for row in rows]
    for row in rows:
        if row.runtime != spec.name:
            raise ValueError(f"runtime {spec.name!r}: a row of {row.runtime!r}")
        if row.format not in spec.formats or row.format not in spec.suffixes.values():
            raise ValueError(f"runtime {spec.name!r}: row {row.precision} in format {row.format!r}, which it does "
                             "not open")
        if precisions.count(row.precision) > 1:
            raise ValueError(f"runtime {spec.name!r}: precision {row.precision} listed twice")
    SPECS[spec.name] = spec
    ROWS.extend(rows)
    return spec
