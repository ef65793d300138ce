"""Cost of the LayerMerge table the prune stage builds (a script, not a test), and how it grows with depth
(ResNet-20, -32, -56).

For each network (CIFAR ResNet on 1×28×28 Fashion-MNIST, x86 CPU, ONNX Runtime fp32), built the way the prune stage
builds it (:mod:`edgekd.prune.context`: each change timed interleaved with the unpruned network):

- *entries*: candidate (segment, kernel option) entries; *changes*: the entries plus every layer's removal (the
  prune-only baseline's items), of which *timed* change the network (a layer kept as its own segment is the unpruned
  network itself and is not timed);
- *latency table*: pairs of whole-network timings the in-context table takes (one per timed change, beside the
  unpruned network), seconds to build it cold (each network merged, exported to ONNX and timed with the bench
  statistics) and warm (a second build that finds every timing in its cache), and the unpruned network's median
  latency and the p10–p90 spread of its timings during the build;
- *importance*: seconds per entry in ``proxy`` mode (BN recalibration, no gradient step) and ``finetune`` mode
  (``--steps`` SGD steps), measured on ``--sample`` entries spread over the table, and the projected total for all
  changes (per-entry mean × changes; entries are independent, so ``torchrun`` ranks or the executor divide this);
- *DP*: seconds to solve at 70 % of the unpruned network's latency (resolution ``--resolution`` ms).

Example::

    python benchmarks/layermerge_cost.py --runs 20 --sample 6 --steps 20 --threads 1 --record layermerge-cost
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from edgekd._atomic import atomic_write_json
from edgekd.data import DataBundle, load_dataset
from edgekd.models import create
from edgekd.prune.context import ContextLog, ContextModel, network_key, network_timer, time_in_context
from edgekd.prune.dp import Entry, solve
from edgekd.prune.graph import Chain, analyse
from edgekd.prune.importance import ImportanceSettings, ImportanceStore, measure_importance
from edgekd.prune.latency import LatencySettings
from edgekd.prune.segments import Plan, Segment, candidate_options, drop_changes
from edgekd.runtime import Normalize
from records import write_record

HEADER = ("network", "layers", "entries", "changes", "timed", "timings", "latency_cold_s", "latency_warm_s",
          "unpruned_ms", "reference_spread", "proxy_s_per_entry", "proxy_total_s", "finetune_s_per_entry",
          "finetune_total_s", "dp_s")


def importance_seconds(chain: Chain, sample: list[tuple[str, Segment]], data: DataBundle, steps: int, cache: Path,
                       console: Console | None) -> dict[str, float | None]:
    """Seconds per entry of each importance mode over ``sample`` (its first entry, with the base accuracy and the
    warm-up, is left out of the mean; None for a sample of fewer than two)."""
    per_entry: dict[str, float | None] = {"proxy": None, "finetune": None}
    for mode in ("proxy", "finetune") if len(sample) > 1 else ():
        settings = ImportanceSettings(mode=mode, steps=steps, batch_size=64)
        store = ImportanceStore(cache / mode, settings)
        measure_importance(chain, sample[:1], data, settings, store, console=console)
        start = time.perf_counter()
        measure_importance(chain, sample[1:], data, settings, store, console=console)
        per_entry[mode] = (time.perf_counter() - start) / (len(sample) - 1)
    return per_entry


def measure(depth: int, data: DataBundle, latency: LatencySettings, args: argparse.Namespace,
            console: Console | None) -> dict[str, Any]:
    """The figures of one ResNet (module docstring)."""
    torch.manual_seed(0)
    net = create(f"resnet{depth}", num_classes=10, in_channels=1).eval()
    x = data.val.x[torch.arange(args.batch_size) % len(data.val)]
    start = time.perf_counter()
    chain = analyse(net, Normalize(data.mean, data.std)(data.val.x[:1]))
    options = candidate_options(chain, max_kernel=args.max_kernel)
    analyse_s = time.perf_counter() - start
    changes = {o.key: o.segment for o in options}
    changes.update(dict(drop_changes(chain)))
    unchanged = [k for k, s in changes.items() if s.kept and s.end - s.st == 1]
    plans = {k: Plan.single(chain, s) for k, s in changes.items() if k not in unchanged}
    key = {"settings": latency.cache_key(), **network_key(chain, x, data.mean, data.std)}
    with tempfile.TemporaryDirectory() as tmp:
        seconds, logs = [], []
        for _ in ("cold", "warm"):
            start = time.perf_counter()
            logs.append(ContextLog(Path(tmp) / "latency", key))
            with network_timer(chain, plans, latency, x, data.mean, data.std) as time_pair:
                time_in_context(logs[-1], list(plans), time_pair, console=console)
            seconds.append(time.perf_counter() - start)
        log = logs[0]
        if logs[1].log != log.log:
            raise RuntimeError("the warm build timed networks again: its cache was not hit")
        model = ContextModel.from_log(log.log, chain.depth, {k: s.end - s.st for k, s in changes.items()},
                                      unchanged)
        imp_changes = [(o.key, o.segment) for o in options] + drop_changes(chain)
        step = max(1, len(imp_changes) // max(1, args.sample))
        sample = imp_changes[::step][: args.sample]
        per_entry = importance_seconds(chain, sample, data, args.steps, Path(tmp) / "importance", console)
    entries = [Entry(o, model.cost(o.key), 1.0) for o in options]
    start = time.perf_counter()
    solve(entries, chain.depth, 0.7 * model.reference_ms - model.fixed_ms, resolution_ms=args.resolution)
    dp_s = time.perf_counter() - start
    return {"network": f"resnet{depth}", "layers": chain.depth, "entries": len(options), "changes": len(changes),
            "timed": len(plans), "timings": len(log.log), "analyse_s": analyse_s, "latency_cold_s": seconds[0],
            "latency_warm_s": seconds[1], "unpruned_ms": model.reference_ms,
            "reference_spread": model.reference_spread,
            "proxy_s_per_entry": per_entry["proxy"], "finetune_s_per_entry": per_entry["finetune"],
            **{f"{mode}_total_s": None if s is None else s * len(changes) for mode, s in per_entry.items()},
            "dp_s": dp_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[20, 32, 56])
    parser.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--train", type=int, default=2000, help="training images (importance fine-tune)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1, help="batch of the timed networks")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--max-kernel", type=int, default=None, help="drop options with larger merged kernels")
    parser.add_argument("--sample", type=int, default=6,
                        help="entries whose importance is measured per mode (0 or 1: skip the importance step)")
    parser.add_argument("--steps", type=int, default=20, help="fine-tune steps (and proxy BN batches)")
    parser.add_argument("--resolution", type=float, default=0.001, help="DP time step, ms")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--record", default=None, help="write the figures as results/<RECORD>.json")
    args = parser.parse_args()
    if args.batch_size < 1 or args.runs < 1 or args.warmup < 0 or args.sample < 0 or args.resolution <= 0:
        parser.error("--batch-size and --runs must be >= 1, --warmup and --sample >= 0, --resolution > 0")
    torch.set_num_threads(args.threads)
    console = Console(stderr=True, quiet=True)
    data = load_dataset("fashion-mnist", {"limit_train": args.train}, data_dir=args.data_dir, val_fraction=0.1)
    latency = LatencySettings(device="x86-cpu", runtime="onnxruntime", precision="fp32",
                              options={"threads": args.threads}, warmup=args.warmup, runs=args.runs)
    rows = []
    for depth in args.depths:
        rows.append(measure(depth, data, latency, args, console))
        print(json.dumps(rows[-1]), flush=True)
    print(" | ".join(HEADER))
    for row in rows:
        print(" | ".join(f"{row[h]:.3f}" if isinstance(row[h], float) else "-" if row[h] is None else str(row[h])
                         for h in HEADER))
    figures = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}
    if args.json is not None:
        atomic_write_json(args.json, figures)
    if args.record is not None:
        print(write_record(args.record, title="LayerMerge table cost (in-context latency, importance, DP) by depth",
                           figures=figures))


if __name__ == "__main__":
    main()
