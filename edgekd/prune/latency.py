"""The LayerMerge latency lookup table ``T(st, end, c)``, measured on the device's own runtime.

Kim et al. (ICML 2024, section 4) time, for every candidate segment and kernel option, the network
``merged conv + activation`` at the segment's real input shape on the target; the DP then adds these up. Here each
entry is exported to ONNX (the export stage's TorchScript exporter), converted to OpenVINO IR when that is the
runtime, opened with edgekd's :class:`~edgekd.runtime.Runner` and timed with
:func:`edgekd.bench.latency.measure_latency` (the bench stage's statistics). OpenVINO is always opened with an
explicit ``inference_precision`` (its CPU default is bf16 on AMX/AVX-512-BF16 machines).

The cache is one JSON file per (device, runtime, precision, runner options, measurement settings, library
versions), in which each entry is keyed by its shapes only, so another network with the same layer shapes reuses
it. The file is rewritten atomically after every measured entry: a run killed at any point resumes where it was.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from edgekd._atomic import atomic_write_json
from edgekd.bench.latency import measure_latency
from edgekd.config.prune import TABLE_RUNTIMES
from edgekd.errors import UserError
from edgekd.pipeline.provenance import library_versions
from edgekd.prune.graph import Chain
from edgekd.prune.segments import Option
from edgekd.runtimes import runtime_part

RUNTIMES = TABLE_RUNTIMES
"""Runtimes whose package times latency-table entries (a ``latency`` module), in table order."""


@dataclass(frozen=True)
class LatencySettings:
    """Where and how entries are timed. ``options`` are the runner options the device profile sets (threads,
    providers, device); ``statistic`` is the latency summary the DP uses (``p50``, ``mean``, ...)."""

    device: str
    runtime: str = RUNTIMES[0]
    precision: str = "fp32"
    options: dict[str, Any] = field(default_factory=dict)
    warmup: int = 10
    runs: int = 50
    max_seconds: float | None = 2.0
    statistic: str = "p50"

    def runner_options(self) -> dict[str, Any]:
        """Runner options with the explicit inference precision (UserError for an unsupported pair)."""
        if self.runtime not in RUNTIMES:
            raise UserError(f"LayerMerge latency table: runtime {self.runtime!r} is not supported here "
                            f"(supported: {', '.join(RUNTIMES)})")
        options: dict[str, Any] = runtime_part(self.runtime, "latency").table_options(self.precision, self.options)
        return options

    def cache_key(self) -> dict[str, Any]:
        """Everything an entry's latency depends on besides its shapes."""
        key = asdict(self)
        key.pop("statistic")
        key["options"] = self.runner_options()
        key["libraries"] = library_versions()
        return key


def signature(chain: Chain, option: Option, batch_size: int) -> dict[str, Any]:
    """The shapes that fix an entry's latency: input ``(N, C, H, W)``, output channels, kernel, stride, padding,
    groups and the activation after the merged conv."""
    first, last = chain.layer(option.segment.st + 1), chain.layer(option.segment.end)
    _, channels, height, width = first.input_shape
    act = type(last.activation).__name__ if last.activation is not None else None
    return {"input": [batch_size, channels, height, width], "out_channels": last.out_channels,
            "kernel": option.kernel, "stride": option.stride, "padding": option.padding,
            "groups": channels if option.depthwise else 1, "activation": act}


def signature_key(sig: dict[str, Any]) -> str:
    n, c, h, w = sig["input"]
    return (f"in{n}x{c}x{h}x{w}-out{sig['out_channels']}-k{sig['kernel']}-s{sig['stride']}-p{sig['padding']}"
            f"-g{sig['groups']}-{sig['activation']}")


def _activation(name: str | None) -> nn.Module:
    if name is None:
        return nn.Identity()
    module = getattr(nn, name, None)
    if not isinstance(module, type) or not issubclass(module, nn.Module):
        raise UserError(f"LayerMerge latency table: unknown activation {name!r}")
    return module()


def measure_module(net: nn.Module, example: torch.Tensor, settings: LatencySettings) -> dict[str, float | int]:
    """Export ``net`` (fed ``example`` as is), open it in ``settings.runtime`` and time it (bench statistics)."""
    from edgekd.export.onnx import torchscript_onnx_export
    from edgekd.runtime import open_runner

    options = settings.runner_options()
    with tempfile.TemporaryDirectory(prefix="edgekd-latency-") as tmp:
        path = Path(tmp) / "entry.onnx"
        with torch.no_grad():
            torchscript_onnx_export(net.eval(), example, path, opset=17, dynamic_batch=False)
        path = runtime_part(settings.runtime, "latency").entry_artifact(path, Path(tmp))
        x = example.numpy()
        with open_runner(settings.runtime, path, **options) as runner:
            return measure_latency(lambda: runner(x), warmup=settings.warmup, runs=settings.runs,
                                   max_seconds=settings.max_seconds if settings.max_seconds is not None else 30.0)


def _entry_network(sig: dict[str, Any]) -> tuple[nn.Module, torch.Tensor]:
    n, c, h, w = sig["input"]
    generator = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(c, sig["out_channels"], sig["kernel"], sig["stride"], sig["padding"], groups=sig["groups"])
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * 0.1)
    return nn.Sequential(conv, _activation(sig["activation"])), torch.rand(n, c, h, w, generator=generator)


class LatencyTable:
    """The on-disk cache of entry latencies for one :class:`LatencySettings` (module docstring)."""

    def __init__(self, cache_dir: Path, settings: LatencySettings) -> None:
        self.settings = settings
        key = settings.cache_key()
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.path = Path(cache_dir) / f"latency-{digest}.json"
        self.key = key
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            stored = json.loads(self.path.read_text())
            if stored.get("key") == json.loads(json.dumps(key, default=str)):
                self.entries = stored.get("entries", {})

    def latency(self, sig: dict[str, Any]) -> float | None:
        """The cached latency (ms, ``settings.statistic``) of ``sig``, or None."""
        stats = self.entries.get(signature_key(sig))
        return None if stats is None else float(stats[self.settings.statistic])

    def measure(self, sig: dict[str, Any]) -> float:
        """Time ``sig`` now, store it (atomically, at once) and return its latency."""
        net, example = _entry_network(sig)
        self.entries[signature_key(sig)] = measure_module(net, example, self.settings)
        atomic_write_json(self.path, {"key": self.key, "entries": self.entries})
        return float(self.entries[signature_key(sig)][self.settings.statistic])


def build_latency_table(chain: Chain, options: Iterable[Option], settings: LatencySettings, cache_dir: Path, *,
                        batch_size: int = 1, console: Console | None = None) -> dict[str, float]:
    """``{option.key: latency_ms}`` for ``options``, measuring only the shapes not yet in the cache."""
    table = LatencyTable(cache_dir, settings)
    sigs = {option.key: signature(chain, option, batch_size) for option in options}
    todo = {signature_key(s): s for s in sigs.values() if table.latency(s) is None}
    console = console or Console(stderr=True)
    with Progress(TextColumn("[bold]latency table[/bold]"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console,
                  transient=False) as progress:
        task = progress.add_task("latency", total=len(todo), info=f"{len(sigs) - len(todo)} cached")
        for key, sig in todo.items():
            ms = table.measure(sig)
            progress.update(task, advance=1, info=f"{key}: {ms:.4f} ms")
    return {name: float(table.latency(sig)) for name, sig in sigs.items()}  # type: ignore[arg-type]
