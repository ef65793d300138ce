"""The exporters' registry and the parity rule: how a capability row's artifact is built, and how it is judged
against the torch model it comes from. Used by the export stage and the prune stage alike.

Each runtime package registers the exporters its rows name (``methods`` of a row ``built_by="export"``) in its
``exporter`` module with :func:`register_exporter`; :func:`exporter` imports that module and returns the builder
with the row's precision and the runtime's device (as the device profile names it, e.g. ``cuda:1``) bound. Every
builder is called as ``builder(net, mean, std, example, out, cfg)`` and returns the artifact's main file, written
inside ``out``.

Parity: an artifact fails if the largest logit differs from torch's by more than ``atol + rtol * |logit|`` or its
top-1 agreement falls below ``min_top1_agreement`` (``fp16_*`` and ``bf16_*`` tolerances of the export config for
those precisions, whose rounding grows with the logit).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
from torch import nn

from edgekd._registry import Registry
from edgekd.capabilities import capability
from edgekd.config import Device, ExportConfig
from edgekd.data.probe import describe_probe
from edgekd.runtimes import runtime_part


class Exporter(Protocol):
    """A registered exporter: the row's precision and the runtime's device are passed by keyword."""

    __name__: str

    def __call__(self, net: nn.Module, mean: Any, std: Any, example: torch.Tensor, out: Path, cfg: ExportConfig,
                 *, precision: str, device: str) -> Path: ...


Builder = Callable[[nn.Module, Any, Any, torch.Tensor, Path, ExportConfig], Path]

EXPORTERS: Registry[Exporter] = Registry("exporter")
"""Exporter name (a ``methods`` entry of the capability table's export rows) → exporter."""


def register_exporter(name: str) -> Callable[[Exporter], Exporter]:
    """Decorator registering an exporter under ``name`` where it is defined (a runtime package's ``exporter``)."""
    return EXPORTERS.register(name)


def exporter(runtime: str, precision: str, device: Device) -> tuple[str, Builder]:
    """(artifact format, builder) of the full-precision ``runtime``/``precision`` artifact for the profile
    ``device`` (a KeyError for a pair the capability table does not export)."""
    row = capability(runtime, precision)
    if row is None or row.built_by != "export":
        raise KeyError(f"{runtime}/{precision} is not built by the export stage")
    (method,) = row.methods
    runtime_part(row.runtime, "exporter")  # registers the runtime's exporters
    return row.format, partial(EXPORTERS.get(method), precision=row.precision, device=device.device_of(runtime))


class ParityTolerance(NamedTuple):
    """An artifact passes its parity check when every logit is within ``atol + rtol * |torch logit|`` and its top-1
    agreement with torch is at least ``min_top1_agreement``."""

    atol: float
    rtol: float
    min_top1_agreement: float


def parity_tolerance(cfg: ExportConfig, precision: str) -> ParityTolerance:
    """The tolerance for an artifact of ``precision``. Reduced precisions round relative to the value (unit roundoff
    2^-11 for fp16, 2^-8 for bf16), so their bound grows with the logit."""
    if precision == "fp16":
        return ParityTolerance(cfg.fp16_parity_atol, cfg.fp16_parity_rtol, cfg.fp16_min_top1_agreement)
    if precision == "bf16":
        return ParityTolerance(cfg.bf16_parity_atol, cfg.bf16_parity_rtol, cfg.bf16_min_top1_agreement)
    return ParityTolerance(cfg.parity_atol, cfg.parity_rtol, cfg.min_top1_agreement)


def parity_figures(reference: Any, candidate: Any, x: np.ndarray, cfg: ExportConfig, precision: str
                   ) -> dict[str, Any]:
    """Parity figures of the ``candidate`` runner against ``reference`` on ``x``, with the tolerance they were judged
    by."""
    from edgekd.export.onnx import check_parity

    tolerance = parity_tolerance(cfg, precision)
    parity: dict[str, Any] = dict(check_parity(reference, candidate, x, atol=tolerance.atol, rtol=tolerance.rtol,
                                               min_top1_agreement=tolerance.min_top1_agreement))
    parity.update(tolerance._asdict(), samples=len(x))
    return parity


def parity_message(parity: dict[str, Any]) -> str:
    """The one line that says why an artifact failed its parity check."""
    allowed = f"{parity['atol']} + {parity['rtol']}·|logit|" if parity.get("rtol") else f"{parity['atol']}"
    probe = describe_probe(parity["probe"]) if "probe" in parity else f"{parity['samples']} images"
    return (f"parity check failed against torch on {probe}: max |Δlogit| "
            f"{parity['max_abs_diff']:.3g} (allowed {allowed}), top-1 agreement "
            f"{parity['top1_agreement']:.4f} (needed {parity['min_top1_agreement']})")
