"""One package per runtime, each holding all edgekd knows of it; this module assembles the capability table.

Every sub-package ``edgekd.runtimes.<name>`` has a ``spec`` module that registers its
:class:`~edgekd.runtimes._table.RuntimeSpec` and rows (:func:`~edgekd.runtimes._table.register`); importing this
package imports each of them, found on disk, so a new runtime is added by its package alone. The table here imports
no back end: runners, exporters, sessions and profilers are modules of each package, imported when used.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from types import ModuleType

from edgekd.runtimes._table import ROWS, SPECS, BuiltBy, Capability, NncfTarget, Requirement, RuntimeSpec

for _info in pkgutil.iter_modules(__path__):
    if _info.ispkg and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}.spec")

RUNTIME_SPECS: dict[str, RuntimeSpec] = {s.name: s for s in sorted(SPECS.values(), key=lambda s: (s.rank, s.name))}
"""Runtime name → spec, in table order."""

CAPABILITIES: tuple[Capability, ...] = tuple(r for name in RUNTIME_SPECS for r in ROWS if r.runtime == name)
"""Every (runtime, precision) row, in table order."""


def _suffixes() -> dict[str, str]:
    table: dict[str, str] = {}
    for spec in RUNTIME_SPECS.values():
        for suffix, fmt in spec.suffixes.items():
            if table.setdefault(suffix, fmt) != fmt:
                raise ValueError(f"suffix {suffix!r} is format {table[suffix]!r} and {fmt!r}")
    return table


FORMAT_SUFFIXES: dict[str, str] = _suffixes()
"""File suffix → artifact format (DESIGN.md manifest ``format``), over every runtime."""


def runtime_module(name: str, part: str) -> str:
    """The dotted name of module ``part`` of runtime ``name``'s package (``runner``, ``session``, ...)."""
    return f"{__name__}.{name}.{part}"


def runtime_part(name: str, part: str) -> ModuleType:
    """Module ``part`` of runtime ``name``'s package, imported (back ends stay lazy inside it)."""
    return importlib.import_module(runtime_module(name, part))


def has_part(name: str, part: str) -> bool:
    """Whether runtime ``name``'s package has a module ``part``."""
    return importlib.util.find_spec(runtime_module(name, part)) is not None


def native_tools() -> dict[str, str]:
    """Runtime name → its own benchmark tool, for every runtime whose ``native`` module can compare with it."""
    found = {name: runtime_part(name, "native") for name in RUNTIME_SPECS if has_part(name, "native")}
    return {name: tool.TOOL for name, tool in found.items() if hasattr(tool, "compare")}


__all__ = ["BuiltBy", "CAPABILITIES", "Capability", "FORMAT_SUFFIXES", "NncfTarget", "RUNTIME_SPECS", "Requirement",
           "RuntimeSpec", "has_part", "native_tools", "runtime_module", "runtime_part"]
