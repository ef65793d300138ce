"""Latencies the CI gate measures itself, always two series side by side in one process.

Each series is timed by :func:`edgekd.bench.latency.interleaved_calls` in blocks of ``INTERLEAVE_BLOCK`` calls after
``INTERLEAVE_BLOCK_WARMUP`` untimed ones, the two models in a fresh seeded order every round, so both series see the
same state of the machine:

- :func:`time_with_reference`: an artifact beside the machine reference (:mod:`edgekd.bench.reference`), run by
  the artifact's runtime with the artifact's threads and compute precision (``edgekd baseline`` and a ``check``
  that has only the baseline's numbers);
- :func:`time_side_by_side`: a baseline artifact beside the candidate artifact (a ``check`` that has the baseline's
  artifacts).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.bench.latency import INTERLEAVE_BLOCK, INTERLEAVE_BLOCK_WARMUP, interleaved_calls
from edgekd.bench.reference import REFERENCE_RUNTIMES, reference_file, reference_input
from edgekd.runtime import open_runner

#: rounds of interleaved blocks per series by default: ``DEFAULT_ROUNDS · INTERLEAVE_BLOCK`` samples per series
DEFAULT_ROUNDS = 20
#: calls per block, the unit the gate's intervals resample
BLOCK = INTERLEAVE_BLOCK
#: untimed calls of each model before the first round
WARMUP_CALLS = 20


def input_batch(sample_shape: Sequence[int | None], batch_size: int) -> np.ndarray:
    """A seeded uniform [0, 1) float32 batch of ``batch_size`` samples (dynamic dimensions become 1)."""
    shape = [batch_size, *(int(d) if d and d > 0 else 1 for d in sample_shape)]
    return np.random.default_rng(0).random(shape, dtype=np.float32)


def runner_options_of(runtime: str, compute: dict[str, Any]) -> dict[str, Any]:
    """The options to open an artifact with as its run measured it, from its ``compute`` record (threads, providers,
    device, compute precision: those the runtime accepts)."""
    from edgekd.runtime import RUNTIMES

    allowed = {"threads", *RUNTIMES.entry(runtime).meta["options"]}
    return {k: compute[k] for k in ("threads", "providers", "device", "inference_precision")
            if k in allowed and compute.get(k) is not None}


def reference_options(runtime: str, options: dict[str, Any]) -> dict[str, Any]:
    """The artifact's runner options that also apply to the reference: threads, providers, device, precision."""
    if runtime not in REFERENCE_RUNTIMES:
        raise ValueError(f"runtime {runtime!r} has no machine reference (only {', '.join(REFERENCE_RUNTIMES)})")
    keep = {"threads", "providers", "device", "inference_precision"}
    return {k: v for k, v in options.items() if k in keep}


def _interleave(stack: ExitStack, opened: list[tuple[str, Path, dict[str, Any], np.ndarray]], rounds: int,
                seed: int) -> list[list[float]]:
    calls = []
    for runtime, path, options, x in opened:
        runner = stack.enter_context(open_runner(runtime, path, **options))
        calls.append(runner.bind(x).call)
    series = interleaved_calls(calls, rounds=rounds, runs=INTERLEAVE_BLOCK, warmup=WARMUP_CALLS,
                               block_warmup=INTERLEAVE_BLOCK_WARMUP, seed=seed)
    return [[round(ns / 1e6, 6) for ns in s] for s in series]  # every call, in order: whole blocks


def time_with_reference(runtime: str, artifact: Path, options: dict[str, Any], x: np.ndarray, *,
                        rounds: int = DEFAULT_ROUNDS, seed: int = 0) -> tuple[list[float], list[float]]:
    """Latency samples (ms) of ``artifact`` and of the machine reference, interleaved: ``(artifact, reference)``."""
    from edgekd.bench.reference import REFERENCE_SHAPE

    with ExitStack() as stack:
        reference = stack.enter_context(reference_file())
        ref_runtime_options = reference_options(runtime, options)
        x_ref = reference_input()
        assert x_ref.shape == REFERENCE_SHAPE
        art, ref = _interleave(stack, [(runtime, artifact, options, x),
                                       (runtime, reference, ref_runtime_options, x_ref)], rounds, seed)
    return art, ref


def time_side_by_side(runtime: str, old: Path, new: Path, options: dict[str, Any], x: np.ndarray, *,
                      rounds: int = DEFAULT_ROUNDS, seed: int = 0) -> tuple[list[float], list[float]]:
    """Latency samples (ms) of the baseline's ``old`` artifact and the candidate ``new``, interleaved."""
    with ExitStack() as stack:
        old_ms, new_ms = _interleave(stack, [(runtime, old, options, x), (runtime, new, options, x)], rounds, seed)
    return old_ms, new_ms
