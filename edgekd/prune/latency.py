"""Timing networks for LayerMerge on the device's own runtime: the settings and the measurements.

:func:`open_module` exports a network to ONNX (the export stage's TorchScript exporter), converts it to OpenVINO IR
when that is the runtime and opens it with edgekd's :class:`~edgekd.runtime.Runner`; :func:`measure_module` times
one network with :func:`edgekd.bench.latency.measure_latency` (the bench stage's statistics) and
:func:`measure_interleaved` several, in interleaved blocks (:func:`edgekd.bench.latency.interleaved_calls`), so
they share the machine's speed. OpenVINO is always opened with an explicit ``inference_precision`` (its CPU default
is bf16 on AMX/AVX-512-BF16 machines). :mod:`edgekd.prune.context` times the table's entries, each a whole network
beside the unpruned one, with it; :meth:`LatencySettings.cache_key` is what such a timing depends on besides the
network."""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.bench.latency import (
    INTERLEAVE_BLOCK,
    INTERLEAVE_BLOCK_WARMUP,
    interleaved_calls,
    latency_stats,
    measure_latency,
)
from edgekd.config.prune import TABLE_RUNTIMES
from edgekd.errors import UserError
from edgekd.pipeline.provenance import library_versions
from edgekd.runtimes import runtime_part


@dataclass(frozen=True)
class LatencySettings:
    """Where and how networks are timed. ``options`` are the runner options the device profile sets (threads,
    providers, device); ``statistic`` is the latency summary the DP uses (``p50``, ``mean``, ``min``, ...)."""

    device: str
    runtime: str = TABLE_RUNTIMES[0]
    precision: str = "fp32"
    options: dict[str, Any] = field(default_factory=dict)
    warmup: int = 10
    runs: int = 50
    max_seconds: float | None = 2.0
    statistic: str = "p50"

    def runner_options(self) -> dict[str, Any]:
        """Runner options with the explicit inference precision (UserError for an unsupported pair)."""
        if self.runtime not in TABLE_RUNTIMES:
            raise UserError(f"LayerMerge latency table: runtime {self.runtime!r} is not supported here "
                            f"(supported: {', '.join(TABLE_RUNTIMES)})")
        options: dict[str, Any] = runtime_part(self.runtime, "latency").table_options(self.precision, self.options)
        return options

    def cache_key(self) -> dict[str, Any]:
        """Everything a logged timing depends on besides the network and its input (the statistic too: a timing
        log keeps that one summary of each timed loop)."""
        key = asdict(self)
        key["options"] = self.runner_options()
        key["libraries"] = library_versions()
        return key


@contextmanager
def open_module(net: nn.Module, example: torch.Tensor, settings: LatencySettings) -> Iterator[Callable[[], object]]:
    """``net`` exported (fed ``example`` as is) and opened in ``settings.runtime``: yields one call on ``example``."""
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
            yield lambda: runner(x)


def measure_module(net: nn.Module, example: torch.Tensor, settings: LatencySettings) -> dict[str, float | int]:
    """Open ``net`` (:func:`open_module`) and time it alone (bench statistics)."""
    with open_module(net, example, settings) as call:
        return measure_latency(call, warmup=settings.warmup, runs=settings.runs,
                               max_seconds=settings.max_seconds if settings.max_seconds is not None else 30.0)


def measure_interleaved(calls: Sequence[Callable[[], object]], settings: LatencySettings
                        ) -> list[dict[str, float | int]]:
    """Time ``calls`` interleaved (:func:`~edgekd.bench.latency.interleaved_calls`): ``settings.warmup`` untimed
    calls of each, then rounds of one block of up to :data:`~edgekd.bench.latency.INTERLEAVE_BLOCK` timed calls of
    each (after a few untimed ones), the calls in a fresh order every round, until every call is timed
    ``settings.runs`` times or ``settings.max_seconds`` have passed (at least one round); bench statistics per
    call."""
    block = min(INTERLEAVE_BLOCK, settings.runs)
    limit = settings.max_seconds if settings.max_seconds is not None else math.inf
    series: list[list[int]] = [[] for _ in calls]
    start = time.perf_counter()
    for round_ in range(math.ceil(settings.runs / block)):
        if round_ and time.perf_counter() - start > limit:
            break
        timed = interleaved_calls(calls, rounds=1, runs=block, warmup=settings.warmup if round_ == 0 else 0,
                                  block_warmup=INTERLEAVE_BLOCK_WARMUP, seed=round_)
        for durations, more in zip(series, timed, strict=True):
            durations += more
    return [latency_stats(durations) for durations in series]
