"""The prune stage's tables and plans: latency and importance of every entry, and the plan of every method and budget.

Latency accounting (one place, so the DP, the budgets and the report agree) follows the in-context model of
:mod:`edgekd.prune.context`: every change a plan can make (an option's segment; a layer's removal for the prune-only
baseline) is timed inside the unpruned network, interleaved with the unpruned network itself, as
``Δ(s) = M · median(L(N_s) / R − 1)``; a plan's predicted latency is ``M + Σ Δ`` (``M`` the median of the unpruned
network's timings; never below the runner's per-call overhead), and the DP adds the non-negative costs
``T(s) = Δ(s) + (end − st) · w``, so a whole-network budget ``B`` (ms, or a fraction of ``M``) leaves
``B − (M − L · w)`` to the table. The prune-only knapsack keeps layer ``j`` at the cost ``−Δ(drop j)`` (clamped at 0
where noise makes a removal look slower). The changes the plans use are then timed again until each has
:data:`CONFIRM_PAIRS` pairs, and every plan solved again, for up to :data:`CONFIRM_ROUNDS` rounds (:func:`confirm`:
the optimizer's curse).

After planning, every distinct plan's merged network is timed the same way (one pair beside the unpruned one), so
the stage records, per plan, the predicted and the measured latency and their relative error, with the reason where
it is above :data:`ERROR_FLAG` and one can be named (:func:`error_cause`)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from edgekd._atomic import atomic_write_json
from edgekd.config.prune import PruneConfig, budget_label
from edgekd.errors import UserError, first_line
from edgekd.executor import Executor
from edgekd.pipeline.context import StageContext
from edgekd.pipeline.manifest import read_json
from edgekd.prune import (
    Chain,
    Entry,
    ImportanceSettings,
    ImportanceStore,
    KnapsackItem,
    LatencySettings,
    Option,
    Plan,
    Segment,
    analyse,
    candidate_options,
    drop_changes,
    measure_importance,
    measure_module,
    solve,
    solve_knapsack,
    solve_merge_only,
)
from edgekd.prune.context import (
    MODEL,
    ContextLog,
    ContextModel,
    log_timings,
    network_key,
    network_timer,
    pending,
    reference_timings,
    time_in_context,
)
from edgekd.prune.importance import BASE as BASE_KEY
from edgekd.prune.segments import option_of
from edgekd.runtime import Normalize

#: where the in-context timing logs of a run are cached (one per network and settings)
LATENCY_CACHE = ("cache", "latency")
#: a change a plan uses is timed until it has this many pairs; its Δ is their median
CONFIRM_PAIRS = 3
#: at most this many rounds of timing the planned changes again and solving again
CONFIRM_ROUNDS = 5
#: predicted vs measured: a relative error above this is flagged, with its cause where one can be named
ERROR_FLAG = 0.10


@dataclass
class Tables:
    """What the DPs need: the analysed chain, its options, the in-context latency model and the importance."""

    chain: Chain
    options: list[Option]
    settings: LatencySettings
    batch_size: int
    model: ContextModel
    overhead_ms: float
    reference_timings_ms: list[float]
    importance: dict[str, float]
    base_accuracy: float
    importance_settings: ImportanceSettings
    confirmation: dict[str, Any] = field(default_factory=dict)

    @property
    def unpruned_ms(self) -> float:
        """``M``: the median of the unpruned network's timings during the table build."""
        return self.model.reference_ms

    @property
    def unpruned_table_ms(self) -> float:
        return self.model.unpruned_table_ms

    @property
    def fixed_ms(self) -> float:
        """``M − L · w``: a plan's predicted latency is its table sum plus this."""
        return self.model.fixed_ms

    def latency(self, key: str) -> float:
        """The DP cost ``T(s)`` of an entry."""
        return self.model.cost(key)

    def single(self, layer: int) -> str:
        """The key of layer ``layer`` kept as its own segment (conv + activation)."""
        wanted = Segment(layer - 1, layer, (layer,))
        for option in self.options:
            if option.segment == wanted:
                return option.key
        raise UserError(f"prune.max_kernel: layer {layer} (kernel {self.chain.layer(layer).kernel}) has no entry of "
                        "its own; raise max_kernel")

    def change_keys(self, plan: Plan) -> list[str]:
        """The changes of ``plan``, as keys of the model (a removed layer is ``drop-j``)."""
        keys = {o.segment: o.key for o in self.options}
        keys.update({segment: key for key, segment in drop_changes(self.chain)})
        return [keys[s] for s in plan.segments]

    def predicted_ms(self, plan: Plan) -> float:
        """``M + Σ Δ`` over the plan's changes, never below the runner's per-call overhead (what an empty network
        takes: first-order sums of many large savings can fall under it)."""
        return max(self.overhead_ms, self.model.predicted_ms(self.change_keys(plan)))

    def entries(self) -> list[Entry]:
        return [Entry(o, self.latency(o.key), self.importance[o.key]) for o in self.options]

    def describe(self) -> dict[str, Any]:
        s, m = self.settings, self.model
        return {"runtime": s.runtime, "precision": s.precision, "statistic": s.statistic, "batch_size": self.batch_size,
                "runner_options": s.runner_options(), "depth": self.chain.depth, "entries": len(self.options),
                "overhead_ms": self.overhead_ms, "unpruned_measured_ms": self.unpruned_ms,
                "reference_timings_ms": self.reference_timings_ms, "reference_spread": m.reference_spread,
                "ratio_noise": m.ratio_noise, "latency_model": m.describe([])["latency_model"],
                "confirmation": self.confirmation,
                "share_ms": m.share_ms, "unpruned_table_ms": self.unpruned_table_ms, "fixed_ms": self.fixed_ms,
                "importance_mode": self.importance_settings.mode, "importance_steps": self.importance_settings.steps,
                "base_val_accuracy": self.base_accuracy,
                "table": {k: {"delta_ms": m.deltas[k], "latency_ms": m.cost(k),
                              "importance": self.importance.get(k)} for k in m.deltas}}


def _changes(chain: Chain, options: list[Option], cfg: PruneConfig) -> dict[str, Segment]:
    changes = {o.key: o.segment for o in options}
    if "prune-only" in cfg.baselines:
        changes.update(dict(drop_changes(chain)))
    return changes


@dataclass
class TableTimings:
    """The timing log of one network's changes and how to add pairs to it (:mod:`edgekd.prune.context`)."""

    ctx: StageContext
    chain: Chain
    settings: LatencySettings
    example: torch.Tensor
    plans: dict[str, Plan]  # every change that is timed, as the network with only that change
    spans: dict[str, int]
    unchanged: list[str]  # changes that leave the network as it is (Δ = 0, never timed)
    log: ContextLog

    def time(self, keys: list[str], repeats: int = 1) -> None:
        data = self.ctx.data()
        with network_timer(self.chain, self.plans, self.settings, self.example, data.mean, data.std) as time_pair:
            time_in_context(self.log, keys, time_pair, repeats=repeats, console=self.ctx.console)

    def model(self) -> ContextModel:
        return ContextModel.from_log(self.log.log, self.chain.depth, self.spans, self.unchanged)


def measure(ctx: StageContext, cfg: PruneConfig, net: nn.Module, settings: LatencySettings,
            importance: ImportanceSettings, batch_size: int) -> Tables:
    """Analyse ``net`` (the plain unpruned student) and measure its tables on the device: every change timed, the
    importance of every option, then the planned changes confirmed (:func:`confirm`). The model, its reference
    timings and the runner's per-call overhead (an empty network) are kept in the stage's folder once confirmed, so
    a resumed attempt reuses them and its plans, and the checkpoints of their fine-tuning, stay the same; the timing
    log itself is cached by network and settings."""
    data = ctx.data()
    normalize = Normalize(data.mean, data.std)
    chain = analyse(net, normalize(data.val.x[:1]))
    options = candidate_options(chain, max_kernel=cfg.max_kernel)
    changes = _changes(chain, options, cfg)
    x = _example(ctx, batch_size)
    unchanged = [k for k, s in changes.items() if s.kept and s.end - s.st == 1]
    timings = TableTimings(ctx, chain, settings, x, {k: Plan.single(chain, s) for k, s in changes.items()
                                                     if k not in unchanged},
                           {k: s.end - s.st for k, s in changes.items()}, unchanged,
                           ContextLog(ctx.run_dir.joinpath(*LATENCY_CACHE),
                                      {"settings": settings.cache_key(), **network_key(chain, x, data.mean, data.std)}))
    path = ctx.stage_dir / "latency-model.json"
    stored = read_json(path)
    if stored is not None and stored.get("latency_model") != MODEL:  # an attempt begun under another model
        stored = None
    if stored is None:
        timings.time(list(timings.plans))
        model, refs, confirmation = timings.model(), reference_timings(timings.log.log), {}
        overhead = float(measure_module(nn.Identity(), torch.rand(*x.shape), settings)[settings.statistic])
    else:
        model, refs = ContextModel.from_json(stored["model"]), list(stored["reference_timings_ms"])
        overhead, confirmation = stored["overhead_ms"], stored["confirmation"]
    store = ImportanceStore(ctx.stage_dir / "importance", importance)
    imp_changes = [(o.key, o.segment) for o in options]
    if "prune-only" in cfg.baselines:
        imp_changes += drop_changes(chain)
    scores = measure_importance(chain, imp_changes, data, importance, store, console=ctx.console,
                                executor=Executor(ctx.recipe.execution))
    base = store.get(BASE_KEY)
    assert base is not None
    tables = Tables(chain, options, settings, batch_size, model, overhead, refs, scores, float(base["accuracy"]),
                    importance, confirmation)
    if stored is None:
        tables = confirm(cfg, tables, timings, smoke=ctx.smoke)
        atomic_write_json(path, {"latency_model": MODEL, "model": tables.model.to_json(),
                                 "reference_timings_ms": tables.reference_timings_ms, "overhead_ms": overhead,
                                 "confirmation": tables.confirmation})
    m = tables.model
    ctx.log(f"unpruned student: {m.reference_ms:.4f} ms on {settings.runtime}/{settings.precision} "
            f"({settings.statistic}, median of {len(tables.reference_timings_ms)} timings, p10–p90 spread "
            f"{100 * m.reference_spread:.1f} %); a change's ratio varies by {100 * m.ratio_noise:.1f} % between "
            f"pairs; per-call overhead {overhead:.4f} ms")
    return tables


def confirm(cfg: PruneConfig, tables: Tables, timings: TableTimings, *, smoke: bool = False) -> Tables:
    """Plan every method at every budget, time the changes the plans use again until each has
    :data:`CONFIRM_PAIRS` pairs (its Δ their median), and plan again, until no plan uses a change with fewer, or for
    :data:`CONFIRM_ROUNDS` rounds. Picking the cheapest of many noisy entries favours those timed too fast (the
    optimizer's curse: Smith & Winkler, Management Science 2006): a plan's prediction then falls below its
    measurement by the sum of its changes' noise. Records ``{"pairs", "rounds", "settled", "confirmed"}``:
    ``settled`` when the last plans need no more pairs, ``confirmed`` the changes with :data:`CONFIRM_PAIRS` pairs."""
    rounds = 0
    while True:
        results, _ = plan_all(cfg, tables, smoke=smoke)
        keys = [k for r in results for k in tables.change_keys(r.plan) if k in timings.plans]
        todo = pending(timings.log.log, keys, CONFIRM_PAIRS)
        if not todo or rounds == CONFIRM_ROUNDS:
            break
        rounds += 1
        timings.ctx.log(f"confirming the planned changes, round {rounds}: {len(set(todo))} change(s), "
                        f"{len(todo)} pair(s)")
        timings.time(keys, CONFIRM_PAIRS)
        tables = dataclasses.replace(tables, model=timings.model(),
                                     reference_timings_ms=reference_timings(timings.log.log))
    confirmed = sum(len(ts) >= CONFIRM_PAIRS for ts in log_timings(timings.log.log).values())
    return dataclasses.replace(tables, confirmation={"pairs": CONFIRM_PAIRS, "rounds": rounds, "settled": not todo,
                                                     "confirmed": confirmed})


def _example(ctx: StageContext, batch_size: int) -> torch.Tensor:
    data = ctx.data()
    return data.val.x[torch.arange(batch_size) % len(data.val)]


def time_plans(ctx: StageContext, tables: Tables, plans: dict[str, Plan]) -> dict[str, dict[str, float]]:
    """Each plan's merged network timed beside the unpruned one, one pair as for the table's changes (ms): ``{name:
    {"measured_ms", "reference_ms"}}``, ``reference_ms`` the unpruned network in the same session. The log is kept
    in the stage's folder, keyed by the plans and the settings, so a resumed attempt reuses it."""
    data = ctx.data()
    x = _example(ctx, tables.batch_size)
    key = {"settings": tables.settings.cache_key(), **network_key(tables.chain, x, data.mean, data.std),
           "plans": {name: plan.to_json() for name, plan in plans.items()}}
    log = ContextLog(ctx.stage_dir / "plan-latency", key)
    with network_timer(tables.chain, plans, tables.settings, x, data.mean, data.std) as time_pair:
        time_in_context(log, list(plans), time_pair, console=ctx.console)
    timed = log_timings(log.log)
    return {k: {"measured_ms": timed[k][0].ms, "reference_ms": timed[k][0].reference_ms} for k in plans}


def error_cause(predicted_ms: float, measured_ms: float, reference_ms: float, tables: Tables, changes: int
                ) -> str | None:
    """Why a plan's prediction misses its measurement by more than :data:`ERROR_FLAG`, where a cause can be named
    from the stage's own figures (None when the error is within it, or no cause is evident)."""
    error = (predicted_ms - measured_ms) / measured_ms
    if abs(error) <= ERROR_FLAG:
        return None
    drift = (reference_ms - tables.unpruned_ms) / tables.unpruned_ms
    if abs(drift) > ERROR_FLAG:
        return (f"the machine's speed moved: the unpruned network measured {reference_ms:.4f} ms beside this plan, "
                f"{tables.unpruned_ms:.4f} ms during the table build ({100 * drift:+.0f} %)")
    if tables.overhead_ms > 0.5 * measured_ms:
        return (f"runner overhead dominates: an empty network takes {tables.overhead_ms:.4f} ms of the "
                f"{measured_ms:.4f} ms")
    noise_ms = math.sqrt(max(1, changes)) * tables.model.ratio_noise * tables.unpruned_ms
    if abs(predicted_ms - measured_ms) <= noise_ms:
        return (f"within the timing noise of its {changes} changes: a change's ratio varies by "
                f"{100 * tables.model.ratio_noise:.1f} % of the unpruned latency between pairs, √{changes} × that is "
                f"{noise_ms:.4f} ms")
    if changes <= 1:
        return ("the same network timed in another session: the table timed this very change, so the two differ "
                "only by how fast each session of the runtime ran")
    return (f"the {changes} changes of this plan interact: each was timed alone in the unpruned network, "
            "and their sum misses what they do together")


def plan_errors(ctx: StageContext, tables: Tables, results: list[Result]) -> dict[str, dict[str, Any]]:
    """``{plan json: {"measured_ms", "reference_ms", "relative_error", "drift_corrected_error", "cause"}}`` for
    every distinct plan; ``drift_corrected_error`` scales the prediction by ``R_p / M``, ``R_p`` the unpruned
    network timed beside the plan (the error had the machine run at the same speed for both)."""
    plans = {str(r.plan.to_json()): r.plan for r in results}
    names = {key: f"plan-{n}" for n, key in enumerate(plans)}
    timed = time_plans(ctx, tables, {names[k]: p for k, p in plans.items()})
    out = {}
    for key, plan in plans.items():
        t = timed[names[key]]
        predicted = tables.predicted_ms(plan)
        changes = sum(1 for k in tables.change_keys(plan) if tables.model.deltas[k] != 0.0)
        at_reference = predicted * t["reference_ms"] / tables.unpruned_ms  # as if the machine ran at R_p, not M
        out[key] = {**t, "relative_error": (predicted - t["measured_ms"]) / t["measured_ms"],
                    "drift_corrected_error": (at_reference - t["measured_ms"]) / t["measured_ms"],
                    "cause": error_cause(predicted, t["measured_ms"], t["reference_ms"], tables, changes)}
    return out


@dataclass(frozen=True)
class Result:
    """One method's plan at one budget."""

    method: str
    budget: str
    budget_ms: float
    table_budget_ms: float
    plan: Plan
    table_ms: float
    predicted_ms: float

    def describe(self, chain: Chain) -> dict[str, Any]:
        """What the stage records: the budget, predicted latency, kept activations and convs, merged kernels."""
        kernels = []
        for s in self.plan.segments:
            option = option_of(chain, s.st, s.end, s.kept) if s.kept else None
            if option is not None:
                kernels.append([s.st, s.end, option.kernel, "dw" if option.depthwise else "dense"])
        return {"method": self.method, "budget": self.budget, "budget_ms": self.budget_ms,
                "table_budget_ms": self.table_budget_ms, "table_ms": self.table_ms, "predicted_ms": self.predicted_ms,
                "plan": self.plan.to_json(), "activations": list(self.plan.positions[1:]),
                "kept_convs": sorted(self.plan.kept), "kernels": kernels, "merged_depth": len(kernels)}


def plan_all(cfg: PruneConfig, tables: Tables, *, smoke: bool = False) -> tuple[list[Result], dict[str, str]]:
    """Every method's plan at every budget, and why any (method, budget) has none (``{"prune-only-0.3": why}``).

    In a smoke run (a few timed calls per entry: the timings are noise) a budget below every plan is solved at the
    unpruned network's table sum instead, which every method meets, so the rest of the path still runs; the
    result records it."""
    budgets = [(budget_label(f), f * tables.unpruned_ms) for f in cfg.budgets]
    budgets += [(budget_label(m, ms=True), m) for m in cfg.budgets_ms]
    results, infeasible = [], {}
    for label, budget_ms in budgets:
        t0 = budget_ms - tables.fixed_ms
        for method in (cfg.method, *cfg.baselines):
            try:
                plan, table_ms = _solve(method, tables, t0, cfg.latency.resolution_ms)
            except UserError as exc:
                if not smoke:
                    infeasible[f"{method}-{label}"] = first_line(exc)
                    continue
                infeasible[f"{method}-{label}"] = f"smoke: {first_line(exc)}; solved at the unpruned table sum"
                room = (tables.chain.depth + 1) * cfg.latency.resolution_ms  # each entry's cost is rounded up
                plan, table_ms = _solve(method, tables, tables.unpruned_table_ms + room, cfg.latency.resolution_ms)
            results.append(Result(method, label, budget_ms, t0, plan, table_ms, tables.predicted_ms(plan)))
    return results, infeasible


def _solve(method: str, tables: Tables, t0: float, resolution_ms: float) -> tuple[Plan, float]:
    chain = tables.chain
    if method in ("layermerge", "merge-only"):
        dp = solve if method == "layermerge" else solve_merge_only
        solution = dp(tables.entries(), chain.depth, t0, resolution_ms=resolution_ms)
        return solution.plan, solution.latency_ms
    droppable = [layer.index for layer in chain.layers if layer.droppable]
    saved = {j: max(0.0, -tables.model.deltas[f"drop-{j}"]) for j in droppable}  # what keeping layer j costs
    items = [KnapsackItem(j, saved[j], tables.importance[f"drop-{j}"]) for j in droppable]
    fixed = tables.unpruned_table_ms - sum(saved.values())
    kept, table_ms = solve_knapsack(items, fixed, t0, resolution_ms=resolution_ms)
    return Plan.layer_pruned(chain, set(droppable) - kept), table_ms

