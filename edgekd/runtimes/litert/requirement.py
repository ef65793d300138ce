"""Whether LiteRT artifacts can be built and run on this host (the ``install`` requirement of its rows)."""

from __future__ import annotations

import importlib.util

PACKAGES = {"litert_torch": "litert-torch", "ai_edge_litert": "ai-edge-litert",
            "ai_edge_quantizer": "ai-edge-quantizer"}
"""Module → distribution of what building (convert, quantize) and running a ``.tflite`` artifact imports."""


def unavailable() -> str | None:
    """Why LiteRT artifacts cannot be built here, in one line naming the missing distributions; None when they
    can."""
    missing = [dist for module, dist in PACKAGES.items() if importlib.util.find_spec(module) is None]
    if not missing:
        return None
    return f"{', '.join(missing)} not installed: pip install 'edgekd[litert]'"
