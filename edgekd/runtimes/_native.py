"""Shared pieces of the native benchmark tools' report parsers (each tool's parser is in its runtime's package,
``edgekd/runtimes/<name>/native.py``): the number pattern and unit conversion. Every figure is returned in
milliseconds; a report without its headline figure is a ValueError naming what is missing."""

from __future__ import annotations

NUMBER = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_UNIT_MS = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3, "sec": 1e3}


def to_ms(value: str, unit: str) -> float:
    """``value`` printed in ``unit`` (``ms``, ``us``/``µs``, ``s``/``sec``) in milliseconds."""
    return float(value) * _UNIT_MS[unit]
