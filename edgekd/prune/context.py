"""In-context LayerMerge latency: every entry timed as the change it makes to the whole network.

Kim et al. (ICML 2024, section 4) time each entry ``T(st, end, c)`` as a network of its own, the merged conv and its
activation, and add the entries up. A one-conv network pays costs a whole network amortises (the call, the
runtime's thread start-up, copies to and from the caller) and misses those its neighbours add (layout changes, cache
reuse), so the sum of a plan's entries drifts away from the plan's latency. Here, departing from the paper, each
change ``s`` (an option's segment, or a layer's removal for the prune-only baseline) is timed where it runs, inside
the network, as a share of the unpruned network timed in the same session::

    ρ(s) = median_k( L_k(N_s) / R_k − 1 ),        Δ(s) = M · ρ(s)

``N`` is the unpruned network in its merged form (BN folded, normalisation inside: what is deployed), ``N_s`` is
``N`` with only ``s`` applied (:meth:`~edgekd.prune.segments.Plan.single`). Each timing ``k`` of a change is a pair:
``N_s`` and ``N`` open side by side and timed interleaved, in blocks of calls in a fresh order every round
(:func:`edgekd.prune.latency.measure_interleaved`), giving ``L_k(N_s)`` and ``R_k``. A shared machine changes speed
over seconds to minutes (a neighbour's burst, a slow mode), which scales the whole network; both networks of a pair
see the same speeds, so their ratio cancels it where a reference timed minutes apart would not. ``M`` is the median
of every ``R_k``. A plan ``P`` is predicted as::

    L̂(P) = M · (1 + Σ_{s ∈ P} ρ(s)) = M + Σ_{s ∈ P} Δ(s)

which is exact for the unpruned plan (every Δ is 0) and, up to timing noise, for any single change; for a plan of
several changes it leaves out how they interact (a first-order model). The DP adds non-negative costs, so an entry
costs::

    T(s) = Δ(s) + (end − st) · w,      w = max(M / L, max_s −Δ(s) / (end − st))

Every plan covers layers ``1 … L`` exactly once, so ``Σ_{s ∈ P} T(s) = L · w + Σ Δ(s)``: the share ``w`` moves
every plan's sum by the same ``L · w``, changes no choice and keeps every cost non-negative; a whole-network budget
``B`` leaves ``B − (M − L · w)`` to the table.

Choosing the cheapest of hundreds of noisy entries picks the ones timed too fast: the optimizer's curse (Smith &
Winkler, "The Optimizer's Curse", Management Science 2006), here a plan predicted far below its measurement when the
savings per change are small beside the timing noise. So the changes a plan uses are timed again (:func:`pending`
with ``repeats``) until each has several pairs, the median of which is unbiased by the choice that one timing made,
and the plans solved again (the prune stage's confirmation rounds). Cost: one pair per change, and the repeats of
those the plans use.

The timings are a log, ``[[name, ms, reference_ms], ...]`` in the order they were taken (``name`` is a change's
key, or :data:`REFERENCE` for the unpruned network timed against itself), kept in one JSON file per (network,
settings, :data:`MODEL`), rewritten atomically after each pair: a run killed at any point resumes with the pairs
still missing.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from edgekd._atomic import atomic_write_json
from edgekd.prune.graph import Chain
from edgekd.prune.latency import LatencySettings, measure_interleaved, open_module
from edgekd.prune.segments import Plan

#: what the timings of a log mean; part of the cache key (a change of semantics must change it)
MODEL = "in-context-v3"
#: the name of the unpruned network timed against itself in a log (where there is no change to time beside it)
REFERENCE = "reference"

#: ``time_pair(key)``: the network with only change ``key`` (``None``: the unpruned one again) and the unpruned
#: network, timed interleaved in one session (ms each)
PairTimer = Callable[[str | None], tuple[float, float]]


@dataclass(frozen=True)
class Timing:
    """One pair: a changed network and the unpruned one, timed interleaved (ms each)."""

    ms: float
    reference_ms: float

    @property
    def ratio(self) -> float:
        """``L(N_s) / R − 1``."""
        return self.ms / self.reference_ms - 1.0


def log_timings(log: Sequence[Sequence[Any]]) -> dict[str, list[Timing]]:
    """Every pair of every change in ``log``, in order (the unpruned network against itself left out)."""
    out: dict[str, list[Timing]] = {}
    for name, ms, reference_ms in log:
        if name != REFERENCE:
            out.setdefault(str(name), []).append(Timing(float(ms), float(reference_ms)))
    return out


def change_ratio(timings: Sequence[Timing]) -> float:
    """``ρ``: the median of a change's pair ratios."""
    return statistics.median(t.ratio for t in timings)


def reference_timings(log: Sequence[Sequence[Any]]) -> list[float]:
    """Every timing of the unpruned network in ``log`` (the reference side of each pair), in order."""
    return [float(reference_ms) for _, _, reference_ms in log]


def pending(log: Sequence[Sequence[Any]], changes: Sequence[str], repeats: int = 1) -> list[str]:
    """The pairs still to time so that every change of ``changes`` has at least ``repeats`` in ``log``, in rounds:
    every change that lacks a pair once (in order), then those that lack another, so the repeats of a change lie
    apart in time."""
    counts = {key: len(timings) for key, timings in log_timings(log).items()}
    keys = list(dict.fromkeys(changes))
    return [key for round_ in range(repeats) for key in keys if counts.get(key, 0) + round_ < repeats]


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

    def add(self, name: str, ms: float, reference_ms: float) -> None:
        self.log.append([name, float(ms), float(reference_ms)])
        atomic_write_json(self.path, {"key": self.key, "log": self.log})


def time_in_context(log: ContextLog, changes: Sequence[str], time_pair: PairTimer, *, repeats: int = 1,
                    console: Console | None = None) -> None:
    """Time every change of ``changes`` beside the unpruned network (``time_pair``) until each has ``repeats`` pairs
    in ``log`` (:func:`pending`); where there is nothing to time and the log holds no timing yet, the unpruned
    network once against itself (``M`` is needed by every plan)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    todo = pending(log.log, changes, repeats)
    if not todo:
        if not log.log:
            log.add(REFERENCE, *time_pair(None))
        return
    console = console or Console(stderr=True)
    with Progress(TextColumn("[bold]latency in context[/bold]"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console,
                  transient=False) as progress:
        task = progress.add_task("context", total=len(todo), info="")
        for done, key in enumerate(todo, start=1):
            ms, reference_ms = time_pair(key)
            log.add(key, ms, reference_ms)
            progress.update(task, completed=done, info=f"{key}: ×{ms / reference_ms:.3f}")


@dataclass(frozen=True)
class ContextModel:
    """The in-context latency model of one network (module docstring): ``M``, every change's ``Δ = M · ρ`` and span
    ``end − st`` (changes that leave the network as it is have ``Δ = 0``), the per-layer share ``w``, the spread
    of the reference timings (``(p90 − p10) / M``) and the timing noise of a change (:attr:`ratio_noise`)."""

    depth: int
    reference_ms: float
    deltas: dict[str, float]
    spans: dict[str, int]
    share_ms: float
    reference_spread: float
    ratio_noise: float

    @classmethod
    def from_log(cls, log: Sequence[Sequence[Any]], depth: int, spans: Mapping[str, int],
                 unchanged: Sequence[str] = ()) -> ContextModel:
        """The model of ``spans``' changes from a timing log; ``unchanged`` are keys whose network is ``N``
        itself (Δ = 0, never timed). KeyError names a change the log lacks.

        ``ratio_noise`` is the median, over changes timed more than once, of the sample standard deviation of
        their pair ratios (0 where none is): how far one pair's ``ρ`` strays from another's."""
        refs = reference_timings(log)
        if not refs:
            raise ValueError("the timing log holds no timing of the unpruned network")
        reference = statistics.median(refs)
        timed = log_timings(log)
        deltas = {key: 0.0 if key in unchanged else reference * change_ratio(timed[key]) for key in spans}
        need = max((-deltas[k] / spans[k] for k in spans), default=0.0)
        deciles = statistics.quantiles(refs, n=10) if len(refs) > 1 else [refs[0]] * 9
        spread = (deciles[-1] - deciles[0]) / reference if reference > 0 else 0.0
        noises = [statistics.stdev(t.ratio for t in ts) for ts in timed.values() if len(ts) > 1]
        return cls(depth, reference, deltas, dict(spans), max(reference / depth, need), spread,
                   statistics.median(noises) if noises else 0.0)

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
                "ratio_noise": self.ratio_noise, "fixed_ms": self.fixed_ms,
                "unpruned_table_ms": self.unpruned_table_ms}

    def to_json(self) -> dict[str, Any]:
        return {"depth": self.depth, "reference_ms": self.reference_ms, "deltas": self.deltas, "spans": self.spans,
                "share_ms": self.share_ms, "reference_spread": self.reference_spread,
                "ratio_noise": self.ratio_noise}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ContextModel:
        return cls(int(data["depth"]), float(data["reference_ms"]), {k: float(v) for k, v in data["deltas"].items()},
                   {k: int(v) for k, v in data["spans"].items()}, float(data["share_ms"]),
                   float(data["reference_spread"]), float(data["ratio_noise"]))


def network_key(chain: Chain, example: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> dict[str, Any]:
    """What the timings of a network depend on besides the settings: its structure (modules and graph code), the
    shape of the timed input and the normalisation in front (weights do not change a float network's latency)."""
    structure = f"{chain.module}\n{chain.module.code}"
    return {"network": hashlib.sha256(structure.encode()).hexdigest(), "input": list(example.shape),
            "mean": [float(m) for m in mean], "std": [float(s) for s in std]}


@contextmanager
def network_timer(chain: Chain, plans: Mapping[str, Plan], settings: LatencySettings, example: torch.Tensor,
                  mean: Sequence[float], std: Sequence[float]) -> Iterator[PairTimer]:
    """``time_pair`` for :func:`time_in_context`, the unpruned network open from the first pair to the end of the
    context: ``time_pair(key)`` opens the network of ``plans[key]`` (``None``: the unpruned one again), merged
    (:func:`~edgekd.prune.apply.build_merged`), with the normalisation inside, exported to ``settings``' runtime,
    and times it interleaved with the unpruned one (:func:`~edgekd.prune.latency.measure_interleaved`; ms,
    ``settings.statistic`` of each)."""
    from edgekd.prune.apply import build_merged
    from edgekd.runtime import deployable

    def network(key: str | None) -> torch.nn.Module:
        return deployable(build_merged(chain, Plan.unpruned(chain) if key is None else plans[key]), mean, std)

    with ExitStack() as stack:
        reference: list[Callable[[], object]] = []  # opened at the first pair: a build found in the cache opens nothing

        def time_pair(key: str | None) -> tuple[float, float]:
            if not reference:
                reference.append(stack.enter_context(open_module(network(None), example, settings)))
            with open_module(network(key), example, settings) as changed:
                ms, reference_ms = (float(s[settings.statistic]) for s in
                                    measure_interleaved([changed, reference[0]], settings))
            return ms, reference_ms

        yield time_pair
