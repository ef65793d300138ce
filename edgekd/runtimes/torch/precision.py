"""Eager torch under the precision policy (:mod:`edgekd.runtime.precision`): bf16 artifacts run under bf16
autocast where the CPU computes bf16 natively, everything else in fp32."""

from __future__ import annotations

from typing import Any

from edgekd.runtime import precision as policy


def runner_options(precision: str, device: str) -> dict[str, Any]:
    """The runner's ``inference_precision``: ``bf16`` for a bf16 artifact, else ``f32``."""
    return {"inference_precision": "bf16" if precision == "bf16" else "f32"}


def bf16_unsupported(device: str) -> str | None:
    """Why torch cannot compute in bf16 on this CPU (no AVX-512 BF16 or AMX), or None."""
    return None if policy.torch_bf16_supported() else "this CPU has no native bf16 (needs AVX-512 BF16 or AMX)"
