"""In-context LayerMerge latency: every entry timed as the change it makes to the whole network.

Kim et al. (ICML 2024, section 4) time each entry ``T(st, end, c)`` as a network of its own, the merged conv and its
activation, and add the entries up. A one-conv network pays costs a whole network amortises (the call, the
runtime's thread start-up, copies to and from the caller) and misses those its neighbours add (layout changes, cache
reuse), so the sum of a plan's entries drifts away from the plan's latency. Here, departing from the paper, each
change ``s`` (an option's segment, or a layer's removal for the prune-only baseline) is timed where it runs, inside
the network (each network timed by :func:`edgekd.prune.latency.measure_module`)::

    Δ(s) = L(N_s) − R_s

``N`` is the unpruned network in its merged form (BN folded, normalisation inside: what is deployed), ``N_s`` is
``N`` with only ``s`` applied (:meth:`~edgekd.prune.segments.Plan.single`), and ``R_s`` is the latency of ``N``
re-timed right before and right after the block of changes ``s`` belongs to (the mean of the two): ``N`` is timed
between every ``block`` changes, so the drift of a busy machine reaches both terms alike. A plan ``P`` is predicted
as::

    L̂(P) = M + Σ_{s ∈ P} Δ(s),        M = median of all timings of N

which is exact for the unpruned plan (every Δ is 0) and, up to timing noise, for any single change; for a plan of
several changes it leaves out how they interact (a first-order model). The DP adds non-negative costs, so an entry
costs::

    T(s) = Δ(s) + (end − st) · w,      w = max(M / L, max_s −Δ(s) / (end − st))

Every plan covers layers ``1 … L`` exactly once, so ``Σ_{s ∈ P} T(s) = L · w + Σ Δ(s)``: the share ``w`` moves
every plan's sum by the same ``L · w``, changes no choice and keeps every cost non-negative; a whole-network budget
``B`` leaves ``B − (M − L · w)`` to the table. Cost: one timing of ``N_s`` per change, one of ``N`` per block.

The timings are a log, ``[[name, ms], ...]`` in the order they were taken (``name`` is a change's key, or
:data:`REFERENCE`), kept in one JSON file per (network, settings, :data:`MODEL`), rewritten atomically after each
timing: a run killed at any point resumes with a fresh reference timing, then the changes not yet in the log.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from edgekd._atomic import atomic_write_json
from edgekd.prune.graph import Chain
from edgekd.prune.latency import LatencySettings, measure_module
from edgekd.prune.segments import Plan

#: what the timings of a log mean; part of the cache key (a change of semantics must change it)
MODEL = "in-context-v1"
#: the name of a timing of the unpruned network in a log
REFERENCE = "reference"


def log_deltas(log: Sequence[Sequence[Any]]) -> dict[str, float]:
    """``{change: Δ}`` from a timing log: each change's latency minus the mean of the reference timings nearest
    before and after it (only one of them where the other is missing; a change with neither is left out)."""
    refs = [i for i, (name, _) in enumerate(log) if name == REFERENCE]
    deltas = {}
    for i, (name, ms) in enumerate(log):
        if name == REFERENCE:
            continue
        around = [float(log[j][1]) for j in (max((r for r in refs if r < i), default=None),
                                             min((r for r in refs if r > i), default=None)) if j is not None]
        if around:
            deltas[str(name)] = float(ms) - sum(around) / len(around)
    return deltas


def reference_timings(log: Sequence[Sequence[Any]]) -> list[float]:
    """Every timing of the unpruned network in ``log``, in order."""
    return [float(ms) for name, ms in log if name == REFERENCE]


class ContextLog:
    """The on-disk timing log of one network under one set of settings (module docstring)."""

    def __init__(self, cache_dir: Path, key: Mapping[str, Any]) -> None:
        self.key = json.loads(json.dumps({**key, "model": MODEL}, sort_keys=True, default=str))
        digest = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:16]
        self.path = Path(cache_dir) / f"context-{digest}.json"
        self.log: list[list[Any]] = []
        if self.path.is_file():
            stored = json.loads(self.path.read_text())
            if stored.get("key") == self.key:
                self.log = [list(item) for item in stored.get("log", [])]

    def timed(self) -> set[str]:
        return {str(name) for name, _ in self.log if name != REFERENCE}

    def add(self, name: str, ms: float) -> None:
        self.log.append([name, float(ms)])
        atomic_write_json(self.path, {"key": self.key, "log": self.log})


def time_in_context(log: ContextLog, changes: Sequence[str], time_one: Callable[[str | None], float], *,
                    block: int = 8, console: Console | None = None) -> None:
    """Time every change of ``changes`` not yet in ``log``, with a reference timing before the first, after every
    ``block`` changes and after the last (once, when there is nothing to time and no reference yet).
    ``time_one(None)`` times the unpruned network, ``time_one(key)`` the network with only that change (ms)."""
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    todo = [key for key in dict.fromkeys(changes) if key not in log.timed()]
    if not todo:
        if not reference_timings(log.log):  # nothing to change (e.g. no mergeable layer): M is still needed
            log.add(REFERENCE, time_one(None))
        return
    console = console or Console(stderr=True)
    with Progress(TextColumn("[bold]latency in context[/bold]"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console,
                  transient=False) as progress:
        task = progress.add_task("context", total=len(todo), info=f"{len(changes) - len(todo)} cached")
        log.add(REFERENCE, time_one(None))
        for n, key in enumerate(todo, start=1):
            ms = time_one(key)
            log.add(key, ms)
            progress.update(task, advance=1, info=f"{key}: {ms:.4f} ms")
            if n % block == 0 or n == len(todo):
                log.add(REFERENCE, time_one(None))


@dataclass(frozen=True)
class ContextModel:
    """The in-context latency model of one network (module docstring): ``M``, every change's ``Δ`` and span
    ``end − st`` (changes that leave the network as it is have ``Δ = 0``), and the per-layer share ``w``."""

    depth: int
    reference_ms: float
    deltas: dict[str, float]
    spans: dict[str, int]
    share_ms: float
    reference_spread: float

    @classmethod
    def from_log(cls, log: Sequence[Sequence[Any]], depth: int, spans: Mapping[str, int],
                 unchanged: Sequence[str] = ()) -> ContextModel:
        """The model of ``spans``' changes from a timing log; ``unchanged`` are keys whose network is ``N``
        itself (Δ = 0, never timed). KeyError names a change the log lacks."""
        refs = reference_timings(log)
        if not refs:
            raise ValueError("the timing log holds no timing of the unpruned network")
        timed = log_deltas(log)
        deltas = {key: 0.0 if key in unchanged else timed[key] for key in spans}
        reference = statistics.median(refs)
        need = max((-deltas[k] / spans[k] for k in spans), default=0.0)
        spread = (max(refs) - min(refs)) / reference if reference > 0 else 0.0
        return cls(depth, reference, deltas, dict(spans), max(reference / depth, need), spread)

    def cost(self, key: str) -> float:
        """``T(s) = Δ(s) + (end − st) · w`` (≥ 0 by the choice of ``w``; clamped against rounding)."""
        return max(0.0, self.deltas[key] + self.spans[key] * self.share_ms)

    @property
    def fixed_ms(self) -> float:
        """``M − L · w``: a plan's predicted latency is its table sum plus this."""
        return self.reference_ms - self.depth * self.share_ms

    @property
    def unpruned_table_ms(self) -> float:
        """The table sum of the unpruned plan, ``L · w``."""
        return self.depth * self.share_ms

    def predicted_ms(self, keys: Sequence[str]) -> float:
        """``M + Σ Δ`` over the changes of a plan."""
        return self.reference_ms + sum(self.deltas[k] for k in keys)

    def describe(self, log: Sequence[Sequence[Any]]) -> dict[str, Any]:
        return {"latency_model": MODEL, "reference_ms": self.reference_ms, "reference_timings_ms":
                reference_timings(log), "reference_spread": self.reference_spread, "share_ms": self.share_ms,
                "fixed_ms": self.fixed_ms, "unpruned_table_ms": self.unpruned_table_ms}

    def to_json(self) -> dict[str, Any]:
        return {"depth": self.depth, "reference_ms": self.reference_ms, "deltas": self.deltas, "spans": self.spans,
                "share_ms": self.share_ms, "reference_spread": self.reference_spread}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ContextModel:
        return cls(int(data["depth"]), float(data["reference_ms"]), {k: float(v) for k, v in data["deltas"].items()},
                   {k: int(v) for k, v in data["spans"].items()}, float(data["share_ms"]),
                   float(data["reference_spread"]))


def network_key(chain: Chain, example: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> dict[str, Any]:
    """What the timings of a network depend on besides the settings: its structure (modules and graph code), the
    shape of the timed input and the normalisation in front (weights do not change a float network's latency)."""
    structure = f"{chain.module}\n{chain.module.code}"
    return {"network": hashlib.sha256(structure.encode()).hexdigest(), "input": list(example.shape),
            "mean": [float(m) for m in mean], "std": [float(s) for s in std]}


def network_timer(chain: Chain, plans: Mapping[str, Plan], settings: LatencySettings, example: torch.Tensor,
                  mean: Sequence[float], std: Sequence[float]) -> Callable[[str | None], float]:
    """``time_one`` for :func:`time_in_context`: ``None`` times the unpruned network, a key the network of
    ``plans[key]``, each merged (:func:`~edgekd.prune.apply.build_merged`), with the normalisation inside, exported
    and timed on ``settings``' runtime (ms, ``settings.statistic``)."""
    from edgekd.prune.apply import build_merged
    from edgekd.runtime import deployable

    def time_one(key: str | None) -> float:
        plan = Plan.unpruned(chain) if key is None else plans[key]
        net = deployable(build_merged(chain, plan), mean, std)
        return float(measure_module(net, example, settings)[settings.statistic])

    return time_one
