"""LayerMerge depth compression (Kim et al., "LayerMerge: Neural Network Depth Compression through Layer Pruning
and Merging", ICML 2024), usable as a library without the pipeline runner.

    chain = analyse(net, example)                                  # torch.fx: conv chain, skips, barriers
    options = candidate_options(chain)                             # every (segment, kernel option)
    changes = {o.key: o.segment for o in options}
    unchanged = [k for k, s in changes.items() if s.kept and s.end - s.st == 1]  # the network itself: Δ = 0
    plans = {k: Plan.single(chain, s) for k, s in changes.items() if k not in unchanged}
    log = ContextLog(cache_dir, key)                               # key: the network and the settings
    with network_timer(chain, plans, LatencySettings(device="x86-cpu"), x, mean, std) as time_pair:
        time_in_context(log, list(plans), time_pair)               # each beside the unpruned network
    model = ContextModel.from_log(log.log, chain.depth, {k: s.end - s.st for k, s in changes.items()}, unchanged)
    importance = measure_importance(chain, [(o.key, o.segment) for o in options], data,
                                    ImportanceSettings(steps=50), ImportanceStore(dir, settings))
    entries = [Entry(o, model.cost(o.key), importance[o.key]) for o in options]
    plan = solve(entries, chain.depth, budget_ms - model.fixed_ms).plan  # the DP
    pruned = build_pruned(chain, plan)                             # fine-tune this one
    merged = build_merged(chain, plan, pruned)                     # then deploy this one (same function)

Modules: :mod:`~edgekd.prune.graph` (analysis), :mod:`~edgekd.prune.segments` (candidates, options, plans),
:mod:`~edgekd.prune.merge` (exact merge math), :mod:`~edgekd.prune.apply` (pruned and merged networks),
:mod:`~edgekd.prune.latency` (timing one network on the device's runtime),
:mod:`~edgekd.prune.context` (the latency table: entries timed in context),
:mod:`~edgekd.prune.importance` (importance table),
:mod:`~edgekd.prune.dp` (the DP and the merge-only / prune-only baselines).
"""

from __future__ import annotations

from edgekd.prune.apply import build_merged, build_pruned
from edgekd.prune.context import ContextLog, ContextModel, network_timer, time_in_context
from edgekd.prune.dp import (
    Entry,
    KnapsackItem,
    Solution,
    calibration,
    solve,
    solve_knapsack,
    solve_merge_only,
    table_budget,
)
from edgekd.prune.graph import Chain, Layer, Skip, analyse
from edgekd.prune.importance import (
    ImportanceSettings,
    ImportanceStore,
    importance_value,
    load_importance,
    measure_importance,
)
from edgekd.prune.latency import LatencySettings, measure_module
from edgekd.prune.segments import Option, Plan, Segment, candidate_options, drop_changes, segment_options

__all__ = [
    "Chain", "ContextLog", "ContextModel", "Entry", "ImportanceSettings", "ImportanceStore", "KnapsackItem",
    "LatencySettings", "Layer", "Option", "Plan", "Segment", "Skip", "Solution", "analyse", "build_merged",
    "build_pruned", "calibration", "candidate_options", "drop_changes", "importance_value", "load_importance",
    "measure_importance", "measure_module", "network_timer", "segment_options", "solve", "solve_knapsack",
    "solve_merge_only", "table_budget", "time_in_context",
]
