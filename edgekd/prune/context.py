"""In-context LayerMerge latency: every entry timed as the change it makes to the whole network.

Kim et al. (ICML 2024, section 4) time each entry ``T(st, end, c)`` as a network of its own, the merged conv and its
activation, and add the entries up. A one-conv network pays costs a whole network amortises (the call, the
runtime's thread start-up, copies to and from the caller) and misses those its neighbours add (layout changes, cache
reuse), so the sum of a plan's entries drifts away from the plan's latency. Here, departing from the paper, each
change ``s`` (an option's segment, or a layer's removal for the prune-only baseline) is timed where it runs, inside
the network (each network timed by :func:`edgekd.prune.latency.measure_module`), as a share of the network timed
beside it::

    ρ(s) = L(N_s) / R_s − 1,        Δ(s) = M · ρ(s)

``N`` is the unpruned network in its merged form (BN folded, normalisation inside: what is deployed), ``N_s`` is
``N`` with only ``s`` applied (:meth:`~edgekd.prune.segments.Plan.single`), ``R_s`` the mean of the two timings of
``N`` right before and right after the block of changes ``s`` belongs to (``N`` is re-timed between every ``block``
changes), and ``M`` the median of all timings of ``N``. A shared machine changes speed over minutes, and a change of
speed scales the whole network: the ratio cancels it where the absolute difference ``L(N_s) − R_s`` would carry it.
A block whose two references disagree by more than ``tolerance`` (the speed moved inside it) is timed again, up to
``retries`` times; a change keeps the timing whose references agree best. A plan ``P`` is predicted as::

    L̂(P) = M · (1 + Σ_{s ∈ P} ρ(s)) = M + Σ_{s ∈ P} Δ(s)

which is exact for the unpruned plan (every Δ is 0) and, up to timing noise, for any single change; for a plan of
several changes it leaves out how they interact (a first-order model). The DP adds non-negative costs, so an entry
costs::

    T(s) = Δ(s) + (end − st) · w,      w = max(M / L, max_s −Δ(s) / (end − st))

Every plan covers layers ``1 … L`` exactly once, so ``Σ_{s ∈ P} T(s) = L · w + Σ Δ(s)``: the share ``w`` moves
every plan's sum by the same ``L · w``, changes no choice and keeps every cost non-negative; a whole-network budget
``B`` leaves ``B − (M − L · w)`` to the table. Cost: one timing of ``N_s`` per change, one of ``N`` per block, and
the blocks timed again.

The timings are a log, ``[[name, ms], ...]`` in the order they were taken (``name`` is a change's key, or
:data:`REFERENCE`), kept in one JSON file per (network, settings, :data:`MODEL`), rewritten atomically after each
timing: a run killed at any point resumes with a fresh reference timing (which closes the block it left open), then
the changes not yet settled.
"""

from __future__ import annotations

import hashlib
import json
import math
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
MODEL = "in-context-v2"
#: the name of a timing of the unpruned network in a log
REFERENCE = "reference"


@dataclass(frozen=True)
class Timing:
    """One timing of a changed network and the timings of the unpruned one just before and after it (ms)."""

    ms: float
    before: float | None
    after: float | None

    @property
    def reference_ms(self) -> float:
        """``R_s``: the mean of the references present (NaN where neither is)."""
        around = [r for r in (self.before, self.after) if r is not None]
        return sum(around) / len(around) if around else math.nan

    def disagreement(self, expected_ms: float | None = None) -> float:
        """``|after − before| / min(before, after)``, or where ``expected_ms`` is given, the larger of that and
        ``|R_s − expected_ms| / expected_ms``; infinite until both references exist."""
        if self.before is None or self.after is None:
            return math.inf
        apart = abs(self.after - self.before) / min(self.before, self.after)
        return apart if expected_ms is None else max(apart, abs(self.reference_ms - expected_ms) / expected_ms)

    @property
    def ratio(self) -> float:
        """``ρ = L(N_s) / R_s − 1``."""
        return self.ms / self.reference_ms - 1.0


def log_timings(log: Sequence[Sequence[Any]]) -> dict[str, list[Timing]]:
    """Every timing of every change in ``log``, in order, each with the reference timings nearest before and after
    it."""
    refs = [i for i, (name, _) in enumerate(log) if name == REFERENCE]
    out: dict[str, list[Timing]] = {}
    for i, (name, ms) in enumerate(log):
        if name == REFERENCE:
            continue
        before = max((r for r in refs if r < i), default=None)
        after = min((r for r in refs if r > i), default=None)
        out.setdefault(str(name), []).append(Timing(float(ms), None if before is None else float(log[before][1]),
                                                    None if after is None else float(log[after][1])))
    return out


def best_timings(log: Sequence[Sequence[Any]], expected_ms: float | None = None) -> dict[str, Timing]:
    """Each change's timing whose two references agree best (:meth:`Timing.disagreement`; the latest of equals); a
    change with no reference timing at all is left out."""
    return {name: min(reversed(timings), key=lambda t: t.disagreement(expected_ms))
            for name, timings in log_timings(log).items()
            if any(t.before is not None or t.after is not None for t in timings)}


def unsettled(log: Sequence[Sequence[Any]], changes: Sequence[str], tolerance: float, retries: int,
              expected_ms: float | None = None) -> list[str]:
    """The changes of ``changes`` (in order, once each) still to be timed: never timed, or timed at most
    ``retries`` times with no timing whose references agree within ``tolerance`` (with each other, and with
    ``expected_ms`` where given: :meth:`Timing.disagreement`)."""
    timings = log_timings(log)
    return [key for key in dict.fromkeys(changes) if key not in timings
            or (len(timings[key]) <= retries and all(t.disagreement(expected_ms) > tolerance for t in timings[key]))]


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

    def add(self, name: str, ms: float) -> None:
        self.log.append([name, float(ms)])
        atomic_write_json(self.path, {"key": self.key, "log": self.log})


def time_in_context(log: ContextLog, changes: Sequence[str], time_one: Callable[[str | None], float], *,
                    block: int = 8, tolerance: float = 0.1, retries: int = 2, expected_ms: float | None = None,
                    console: Console | None = None) -> None:
    """Time every change of ``changes`` not yet settled in ``log`` (:func:`unsettled`), in blocks of ``block``
    changes with a reference timing before the first block and after every block (once, when there is nothing to
    time and no reference yet); a block whose references disagree by more than ``tolerance`` (with each other, or
    with ``expected_ms``: the machine ran at another speed than the one it is compared with) is timed again, up to
    ``retries`` times. ``time_one(None)`` times the unpruned network, ``time_one(key)`` the network with only that
    change (ms)."""
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    todo = unsettled(log.log, changes, tolerance, retries, expected_ms)
    if not todo:
        if not reference_timings(log.log):  # nothing to change (e.g. no mergeable layer): M is still needed
            log.add(REFERENCE, time_one(None))
        return
    console = console or Console(stderr=True)
    with Progress(TextColumn("[bold]latency in context[/bold]"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console,
                  transient=False) as progress:
        log.add(REFERENCE, time_one(None))  # opens this session and closes a block a killed one left open
        todo = unsettled(log.log, changes, tolerance, retries, expected_ms)
        task = progress.add_task("context", total=len(todo), info=f"{len(changes) - len(todo)} cached")
        done = 0
        while todo:
            for key in todo[:block]:
                ms = time_one(key)
                log.add(key, ms)
                done += 1
                progress.update(task, completed=done, info=f"{key}: {ms:.4f} ms")
            log.add(REFERENCE, time_one(None))
            todo = unsettled(log.log, changes, tolerance, retries, expected_ms)
            progress.update(task, total=done + len(todo))


@dataclass(frozen=True)
class ContextModel:
    """The in-context latency model of one network (module docstring): ``M``, every change's ``Δ = M · ρ`` and span
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
        reference = statistics.median(refs)
        timed = best_timings(log)
        deltas = {key: 0.0 if key in unchanged else reference * timed[key].ratio for key in spans}
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
