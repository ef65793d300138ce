"""The prune stage's tables and plans: latency and importance of every entry, and the plan of every method and budget.

Latency accounting (one place, so the DP, the budgets and the report agree): an entry's latency is its measured
latency minus the runner's per-call overhead (an empty network timed the same way, clamped at 0), because a real
network pays that overhead once, not once per layer. The unpruned student's measured whole-network latency ``M`` is
compared with the sum ``S`` of its own entries. Where ``M > S`` the difference is the *fixed* part the table does not
model (normalisation, residual adds, pooling, head); where ``M < S`` the entries over-model the network (each tiny
network pays per-operator costs a whole network amortises, or the entries were timed on a busier machine) and they
are calibrated by the scale ``M / S``. A plan's predicted latency is ``scale · (sum of its entries) + fixed``; a
budget of ``B`` ms, or a fraction ``f`` of ``M``, leaves ``(B − fixed) / scale`` to the table
(:func:`edgekd.prune.calibration`, :func:`edgekd.prune.table_budget`). The scale multiplies every entry alike, so
it changes predictions, never the DP's choice at a fraction budget.
"""

from __future__ import annotations

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
    build_latency_table,
    calibration,
    candidate_options,
    drop_changes,
    measure_importance,
    measure_module,
    solve,
    solve_knapsack,
    solve_merge_only,
    table_budget,
)
from edgekd.prune.importance import BASE as BASE_KEY
from edgekd.prune.segments import option_of
from edgekd.runtime import Normalize, deployable

#: where the latency tables of a run are cached (entries keyed by shape: another student with the same shapes
#: reuses them)
LATENCY_CACHE = ("cache", "latency")


@dataclass
class Tables:
    """What the DPs need: the analysed chain, its options, their latency (ms, overhead removed) and importance."""

    chain: Chain
    options: list[Option]
    settings: LatencySettings
    batch_size: int
    raw_ms: dict[str, float]
    overhead_ms: float
    unpruned_ms: float
    importance: dict[str, float]
    base_accuracy: float
    importance_settings: ImportanceSettings

    def latency(self, key: str) -> float:
        """An entry's latency without the per-call overhead."""
        return max(0.0, self.raw_ms[key] - self.overhead_ms)

    def single(self, layer: int) -> str:
        """The key of layer ``layer`` kept as its own segment (conv + activation)."""
        wanted = Segment(layer - 1, layer, (layer,))
        for option in self.options:
            if option.segment == wanted:
                return option.key
        raise UserError(f"prune.max_kernel: layer {layer} (kernel {self.chain.layer(layer).kernel}) has no entry of "
                        "its own; raise max_kernel")

    @property
    def unpruned_table_ms(self) -> float:
        return sum(self.latency(self.single(i)) for i in range(1, self.chain.depth + 1))

    @property
    def fixed_ms(self) -> float:
        """The part of the measured unpruned latency the table does not model (:func:`edgekd.prune.calibration`)."""
        return calibration(self.unpruned_ms, self.unpruned_table_ms)[1]

    @property
    def scale(self) -> float:
        """The calibration of the entries where they sum to more than the network (:func:`edgekd.prune.calibration`)."""
        return calibration(self.unpruned_ms, self.unpruned_table_ms)[0]

    def predicted_ms(self, table_ms: float) -> float:
        """Whole-network latency predicted from a plan's table sum."""
        return self.scale * table_ms + self.fixed_ms

    def entries(self) -> list[Entry]:
        return [Entry(o, self.latency(o.key), self.importance[o.key]) for o in self.options]

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {"runtime": s.runtime, "precision": s.precision, "statistic": s.statistic, "batch_size": self.batch_size,
                "runner_options": s.runner_options(), "depth": self.chain.depth, "entries": len(self.options),
                "overhead_ms": self.overhead_ms, "unpruned_measured_ms": self.unpruned_ms,
                "unpruned_table_ms": self.unpruned_table_ms, "fixed_ms": self.fixed_ms,
                "table_scale": self.scale,
                "importance_mode": self.importance_settings.mode, "importance_steps": self.importance_settings.steps,
                "base_val_accuracy": self.base_accuracy,
                "table": {o.key: {"measured_ms": self.raw_ms[o.key], "latency_ms": self.latency(o.key),
                                  "importance": self.importance[o.key]} for o in self.options}}


def measure(ctx: StageContext, cfg: PruneConfig, net: nn.Module, settings: LatencySettings,
            importance: ImportanceSettings, batch_size: int) -> Tables:
    """Analyse ``net`` (the plain unpruned student) and measure its tables on the device."""
    data = ctx.data()
    normalize = Normalize(data.mean, data.std)
    chain = analyse(net, normalize(data.val.x[:1]))
    options = candidate_options(chain, max_kernel=cfg.max_kernel)
    raw = build_latency_table(chain, options, settings, ctx.run_dir.joinpath(*LATENCY_CACHE),
                              batch_size=batch_size, console=ctx.console)
    overhead, unpruned = _whole_network(ctx, chain, net, settings, batch_size)
    changes = [(o.key, o.segment) for o in options]
    if "prune-only" in cfg.baselines:
        changes += drop_changes(chain)
    store = ImportanceStore(ctx.stage_dir / "importance", importance)
    scores = measure_importance(chain, changes, data, importance, store, console=ctx.console,
                                executor=Executor(ctx.recipe.execution))
    base = store.get(BASE_KEY)
    assert base is not None
    return Tables(chain, options, settings, batch_size, raw, overhead, unpruned, scores, float(base["accuracy"]),
                  importance)


def _whole_network(ctx: StageContext, chain: Chain, net: nn.Module, settings: LatencySettings, batch_size: int
                   ) -> tuple[float, float]:
    """(per-call overhead, measured unpruned latency) in ms, timed once per attempt (a resumed stage reuses them,
    so that its plans, and the checkpoints of their fine-tuning, stay the same)."""
    path = ctx.stage_dir / "whole-network.json"
    stored = read_json(path)
    if stored is not None:
        return float(stored["overhead_ms"]), float(stored["unpruned_ms"])
    data = ctx.data()
    stat = settings.statistic
    _, c, h, w = chain.layer(1).input_shape
    overhead = measure_module(nn.Identity(), torch.rand(batch_size, c, h, w), settings)[stat]
    x = data.test.x[torch.arange(batch_size) % len(data.test)]
    unpruned = measure_module(deployable(net, data.mean, data.std), x, settings)[stat]
    atomic_write_json(path, {"overhead_ms": overhead, "unpruned_ms": unpruned})
    ctx.log(f"unpruned student: {unpruned:.4f} ms on {settings.runtime}/{settings.precision} ({stat}); per-call "
            f"overhead {overhead:.4f} ms")
    return float(overhead), float(unpruned)


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
        t0 = table_budget(budget_ms, measured_ms=tables.unpruned_ms, unpruned_table_ms=tables.unpruned_table_ms)
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
            results.append(Result(method, label, budget_ms, t0, plan, table_ms, tables.predicted_ms(table_ms)))
    return results, infeasible


def _solve(method: str, tables: Tables, t0: float, resolution_ms: float) -> tuple[Plan, float]:
    chain = tables.chain
    if method in ("layermerge", "merge-only"):
        dp = solve if method == "layermerge" else solve_merge_only
        solution = dp(tables.entries(), chain.depth, t0, resolution_ms=resolution_ms)
        return solution.plan, solution.latency_ms
    droppable = [layer.index for layer in chain.layers if layer.droppable]
    fixed = sum(tables.latency(tables.single(layer.index)) for layer in chain.layers if not layer.droppable)
    items = [KnapsackItem(j, tables.latency(tables.single(j)), tables.importance[f"drop-{j}"]) for j in droppable]
    kept, table_ms = solve_knapsack(items, fixed, t0, resolution_ms=resolution_ms)
    return Plan.layer_pruned(chain, set(droppable) - kept), table_ms

