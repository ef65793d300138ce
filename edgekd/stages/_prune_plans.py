"""The prune stage's tables and plans: latency and importance of every entry, and the plan of every method and budget.

Latency accounting (one place, so the DP, the budgets and the report agree) follows the in-context model of
:mod:`edgekd.prune.context`: every change a plan can make (an option's segment; a layer's removal for the prune-only
baseline) is timed inside the unpruned network, as ``Δ(s) = M · (L(N_s) / R_s − 1)`` with the reference ``N``
re-timed between blocks of changes (a block timed again when the machine's speed moved inside it); a plan's predicted
latency is ``M + Σ Δ`` (``M`` the median of the reference timings; never below the runner's per-call overhead), and
the DP adds the non-negative costs ``T(s) = Δ(s) + (end − st) · w``, so a whole-network budget ``B`` (ms, or a
fraction of ``M``) leaves ``B − (M − L · w)`` to the table. The prune-only knapsack keeps layer ``j`` at the cost
``−Δ(drop j)`` (clamped at 0 where noise makes a removal look slower).

After planning, every distinct plan's merged network is timed the same way (each between two reference timings,
again where those stray from ``M``), so
the stage records, per plan, the predicted and the measured latency and their relative error, with the reason where
it is above :data:`ERROR_FLAG` and one can be named (:func:`error_cause`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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
    REFERENCE,
    ContextLog,
    ContextModel,
    best_timings,
    network_key,
    network_timer,
    time_in_context,
)
from edgekd.prune.importance import BASE as BASE_KEY
from edgekd.prune.segments import option_of
from edgekd.runtime import Normalize

#: where the in-context timing logs of a run are cached (one per network and settings)
LATENCY_CACHE = ("cache", "latency")
#: changes timed between two reference timings of the unpruned network
CONTEXT_BLOCK = 8
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
                "latency_model": m.describe([])["latency_model"], "context_block": CONTEXT_BLOCK,
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


def measure(ctx: StageContext, cfg: PruneConfig, net: nn.Module, settings: LatencySettings,
            importance: ImportanceSettings, batch_size: int) -> Tables:
    """Analyse ``net`` (the plain unpruned student) and measure its tables on the device."""
    data = ctx.data()
    normalize = Normalize(data.mean, data.std)
    chain = analyse(net, normalize(data.val.x[:1]))
    options = candidate_options(chain, max_kernel=cfg.max_kernel)
    changes = _changes(chain, options, cfg)
    model, refs, overhead = _latency_model(ctx, chain, changes, settings, batch_size)
    store = ImportanceStore(ctx.stage_dir / "importance", importance)
    imp_changes = [(o.key, o.segment) for o in options]
    if "prune-only" in cfg.baselines:
        imp_changes += drop_changes(chain)
    scores = measure_importance(chain, imp_changes, data, importance, store, console=ctx.console,
                                executor=Executor(ctx.recipe.execution))
    base = store.get(BASE_KEY)
    assert base is not None
    return Tables(chain, options, settings, batch_size, model, overhead, refs, scores, float(base["accuracy"]),
                  importance)


def _example(ctx: StageContext, batch_size: int) -> torch.Tensor:
    data = ctx.data()
    return data.val.x[torch.arange(batch_size) % len(data.val)]


def _latency_model(ctx: StageContext, chain: Chain, changes: dict[str, Segment], settings: LatencySettings,
                   batch_size: int) -> tuple[ContextModel, list[float], float]:
    """The in-context model, the reference timings it rests on and the runner's per-call overhead (an empty
    network), built once per attempt (a resumed stage reuses them, so that its plans, and the checkpoints of their
    fine-tuning, stay the same); the timing log itself is cached by network and settings."""
    path = ctx.stage_dir / "latency-model.json"
    stored = read_json(path)
    if stored is not None:
        return ContextModel.from_json(stored["model"]), list(stored["reference_timings_ms"]), stored["overhead_ms"]
    data = ctx.data()
    x = _example(ctx, batch_size)
    log = ContextLog(ctx.run_dir.joinpath(*LATENCY_CACHE),
                     {"settings": settings.cache_key(), **network_key(chain, x, data.mean, data.std)})
    unchanged = [k for k, s in changes.items() if s.kept and s.end - s.st == 1]
    plans = {k: Plan.single(chain, s) for k, s in changes.items() if k not in unchanged}
    time_in_context(log, list(plans), network_timer(chain, plans, settings, x, data.mean, data.std),
                    block=CONTEXT_BLOCK, console=ctx.console)
    model = ContextModel.from_log(log.log, chain.depth, {k: s.end - s.st for k, s in changes.items()}, unchanged)
    refs = [float(ms) for name, ms in log.log if name == REFERENCE]
    overhead = float(measure_module(nn.Identity(), torch.rand(*x.shape), settings)[settings.statistic])
    atomic_write_json(path, {"model": model.to_json(), "reference_timings_ms": refs, "overhead_ms": overhead})
    ctx.log(f"unpruned student: {model.reference_ms:.4f} ms on {settings.runtime}/{settings.precision} "
            f"({settings.statistic}, median of {len(refs)} timings spread {100 * model.reference_spread:.1f} %); "
            f"per-call overhead {overhead:.4f} ms")
    return model, refs, overhead


def time_plans(ctx: StageContext, tables: Tables, plans: dict[str, Plan]) -> dict[str, dict[str, float]]:
    """Each plan's merged network timed between two reference timings of the unpruned one (ms): ``{name:
    {"measured_ms", "reference_ms"}}``, ``reference_ms`` the mean of the two around it. A plan is timed again (up to
    twice) when those two disagree, or stray from ``M``, by more than 10 %: its measurement is then compared with a
    prediction made at the machine's speed during the table build. The log is kept in the stage's folder, keyed by
    the plans and the settings, so a resumed attempt reuses it."""
    data = ctx.data()
    x = _example(ctx, tables.batch_size)
    key = {"settings": tables.settings.cache_key(), **network_key(tables.chain, x, data.mean, data.std),
           "plans": {name: plan.to_json() for name, plan in plans.items()}}
    log = ContextLog(ctx.stage_dir / "plan-latency", key)
    time_in_context(log, list(plans), network_timer(tables.chain, plans, tables.settings, x, data.mean, data.std),
                    block=1, expected_ms=tables.unpruned_ms, console=ctx.console)
    timed = best_timings(log.log, expected_ms=tables.unpruned_ms)
    return {k: {"measured_ms": timed[k].ms, "reference_ms": timed[k].reference_ms} for k in plans}


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
    noise_ms = math.sqrt(max(1, changes)) * tables.model.reference_spread * tables.unpruned_ms
    if abs(predicted_ms - measured_ms) <= noise_ms:
        return (f"within the timing noise of its {changes} changes: the unpruned network's own timings spread "
                f"{100 * tables.model.reference_spread:.0f} %, √{changes} × that is {noise_ms:.4f} ms (the DP "
                "favours changes timed too fast, so the noise leans towards predictions below the measurement)")
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

