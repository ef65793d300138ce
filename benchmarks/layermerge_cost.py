"""Cost of LayerMerge's lookup tables (a script, not a test), and how it grows with depth (ResNet-20, -32, -56).

For each network (CIFAR ResNet on 1×28×28 Fashion-MNIST, x86 CPU, ONNX Runtime fp32):

- *entries*: candidate (segment, kernel option) entries, and the distinct shapes among them (what is timed);
- *latency table*: seconds to build it cold (every distinct shape exported to ONNX and timed with the bench
  statistics) and warm (the cache hit by a second build);
- *importance*: seconds per entry in ``proxy`` mode (BN recalibration, no gradient step) and ``finetune`` mode
  (``--steps`` SGD steps), measured on ``--sample`` entries spread over the table, and the projected total for all
  entries (per-entry mean × entries; entries are independent, so ``torchrun`` ranks divide this);
- *unpruned*: the table's sum over the unpruned plan against the whole network measured the same way (the table
  leaves out the head, residual adds and pooling);
- *DP*: seconds to solve at 70 % of the unpruned network's table latency (resolution ``--resolution`` ms).

Example (about 10 minutes on 2 loaded cores)::

    python benchmarks/layermerge_cost.py --runs 20 --sample 6 --steps 20 --threads 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

from edgekd.data import load_dataset
from edgekd.models import create
from edgekd.prune.dp import Entry, solve
from edgekd.prune.graph import analyse
from edgekd.prune.importance import ImportanceSettings, ImportanceStore, measure_importance
from edgekd.prune.latency import LatencySettings, build_latency_table, measure_module, signature, signature_key
from edgekd.prune.segments import Plan, candidate_options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[20, 32, 56])
    parser.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--train", type=int, default=2000, help="training images (importance fine-tune)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1, help="batch of the latency entries")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--max-kernel", type=int, default=None, help="drop options with larger merged kernels")
    parser.add_argument("--sample", type=int, default=6,
                        help="entries whose importance is measured per mode (0: skip the importance step)")
    parser.add_argument("--steps", type=int, default=20, help="fine-tune steps (and proxy BN batches)")
    parser.add_argument("--resolution", type=float, default=0.001, help="DP time step, ms")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console(stderr=True, quiet=True)
    data = load_dataset("fashion-mnist", {"limit_train": args.train}, data_dir=args.data_dir, val_fraction=0.1)
    latency = LatencySettings(device="x86-cpu", runtime="onnxruntime", precision="fp32",
                              options={"threads": args.threads}, warmup=args.warmup, runs=args.runs)
    rows = []
    for depth in args.depths:
        torch.manual_seed(0)
        net = create(f"resnet{depth}", num_classes=10, in_channels=1).eval()
        x = (data.train.x[:1] - data.mean[0]) / data.std[0]
        start = time.perf_counter()
        chain = analyse(net, x)
        options = candidate_options(chain, max_kernel=args.max_kernel)
        analyse_s = time.perf_counter() - start
        shapes = {signature_key(signature(chain, o, args.batch_size)) for o in options}
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            table = build_latency_table(chain, options, latency, Path(tmp), batch_size=args.batch_size,
                                        console=console)
            cold_s = time.perf_counter() - start
            start = time.perf_counter()
            build_latency_table(chain, options, latency, Path(tmp), batch_size=args.batch_size, console=console)
            warm_s = time.perf_counter() - start
            step = max(1, len(options) // max(1, args.sample))
            sample = [(o.key, o.segment) for o in options[::step][: args.sample]]
            per_entry = {"proxy": float("nan"), "finetune": float("nan")}
            for mode in ("proxy", "finetune") if args.sample > 1 else ():
                settings = ImportanceSettings(mode=mode, steps=args.steps, batch_size=64)
                store = ImportanceStore(Path(tmp) / mode, settings)
                measure_importance(chain, sample[:1], data, settings, store, console=console)  # base + warm-up
                start = time.perf_counter()
                measure_importance(chain, sample[1:], data, settings, store, console=console)
                per_entry[mode] = (time.perf_counter() - start) / max(1, len(sample) - 1)
        unpruned = sum(table[o.key] for o in options if o.segment in Plan.unpruned(chain).segments)
        measured = measure_module(net, x.expand(args.batch_size, -1, -1, -1).contiguous(), latency)[latency.statistic]
        entries = [Entry(o, table[o.key], 1.0) for o in options]
        start = time.perf_counter()
        solve(entries, chain.depth, 0.7 * unpruned, resolution_ms=args.resolution)
        dp_s = time.perf_counter() - start
        rows.append({"network": f"resnet{depth}", "layers": chain.depth, "entries": len(options),
                     "shapes": len(shapes), "analyse_s": analyse_s, "latency_cold_s": cold_s,
                     "latency_warm_s": warm_s, "unpruned_table_ms": unpruned,
                     "unpruned_measured_ms": measured,
                     "proxy_s_per_entry": per_entry["proxy"], "finetune_s_per_entry": per_entry["finetune"],
                     "proxy_total_s": per_entry["proxy"] * len(options),
                     "finetune_total_s": per_entry["finetune"] * len(options), "dp_s": dp_s})
        print(json.dumps(rows[-1]), flush=True)
    header = ("network", "layers", "entries", "shapes", "latency_cold_s", "latency_warm_s", "unpruned_table_ms",
              "unpruned_measured_ms", "proxy_s_per_entry",
              "proxy_total_s", "finetune_s_per_entry", "finetune_total_s", "dp_s")
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(f"{row[h]:.3f}" if isinstance(row[h], float) else str(row[h]) for h in header))
    if args.json is not None:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
