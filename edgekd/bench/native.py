"""Cross-checks with the runtimes' own benchmark tools (each in its runtime's package, ``native`` module)."""

from __future__ import annotations


def agreement(edgekd_ms: float, native_ms: float) -> float:
    """Relative difference of edgekd's median from the native tool's: ``(edgekd - native) / native``."""
    return (edgekd_ms - native_ms) / native_ms
