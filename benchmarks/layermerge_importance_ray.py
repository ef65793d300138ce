"""Cost of LayerMerge's fine-tune importance (Kim et al., ICML 2024: one short fine-tune per table entry) as Ray
tasks (a script, not a test).

ResNet-20 on Fashion-MNIST (``--train`` training images, 1×28×28), every candidate entry of its table
(:func:`edgekd.prune.segments.candidate_options`), each scored by :func:`edgekd.prune.importance.measure_importance`
in ``finetune`` mode (``--steps`` SGD steps of batch 64, then validation accuracy) as one task of a local Ray with
``--workers`` CPUs, one thread per task. Reported: entries, total seconds (Ray started beforehand; its start-up
apart), seconds per entry per worker, and a sequential check that the first ``--check`` entries give the same
importance digit for digit in this process. The network is initialised, not trained: only the cost counts.

Example (a few minutes on 2 cores)::

    python benchmarks/layermerge_importance_ray.py --train 2000 --steps 20
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

from edgekd.config import ExecutionConfig
from edgekd.data import load_dataset
from edgekd.executor import Executor
from edgekd.models import create
from edgekd.prune.graph import analyse
from edgekd.prune.importance import ImportanceSettings, ImportanceStore, measure_importance
from edgekd.prune.segments import candidate_options
from records import write_record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--train", type=int, default=2000, help="training images")
    parser.add_argument("--steps", type=int, default=20, help="fine-tune steps per entry")
    parser.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray (one task each)")
    parser.add_argument("--check", type=int, default=3, help="entries re-scored in this process to compare")
    args = parser.parse_args()
    import ray

    load_before = os.getloadavg()[0]
    console = Console(stderr=True, quiet=True)
    data = load_dataset("fashion-mnist", {"limit_train": args.train}, data_dir=args.data_dir, val_fraction=0.1)
    torch.manual_seed(0)
    net = create(f"resnet{args.depth}", num_classes=10, in_channels=1).eval()
    chain = analyse(net, (data.train.x[:1] - data.mean[0]) / data.std[0])
    changes = [(o.key, o.segment) for o in candidate_options(chain)]
    settings = ImportanceSettings(mode="finetune", steps=args.steps, batch_size=64)
    start = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, configure_logging=False, log_to_driver=False)
    executor = Executor(ExecutionConfig(backend="ray", threads_per_task=1))
    executor.map(abs, [(0,)] * (4 * args.workers))  # workers started, torch and edgekd imported
    start_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        store = ImportanceStore(Path(tmp) / "ray", settings)
        start = time.perf_counter()
        on_ray = measure_importance(chain, changes, data, settings, store, console=console, executor=executor)
        ray_s = time.perf_counter() - start
        ray.shutdown()
        check = changes[: args.check]
        local = measure_importance(chain, check, data, settings, ImportanceStore(Path(tmp) / "local", settings),
                                   console=console, executor=Executor(ExecutionConfig(backend="sequential")))
    same = all(local[k] == on_ray[k] for k, _ in check)
    print(f"resnet{args.depth}: {len(changes)} entries in {ray_s:.1f} s on {args.workers} Ray workers "
          f"(+ {start_s:.1f} s to start Ray), {ray_s * args.workers / len(changes):.2f} s per entry per worker; "
          f"first {len(check)} entries identical in sequence: {same}")
    if not same:
        raise SystemExit("Ray and sequential importance differ")
    write_record(f"layermerge-importance-ray-resnet{args.depth}",
                 title=f"LayerMerge fine-tune importance of ResNet-{args.depth} as Ray tasks",
                 figures={"network": f"resnet{args.depth}", "entries": len(changes), "steps": args.steps,
                          "train_images": len(data.train), "val_images": len(data.val), "workers": args.workers,
                          "total_s": ray_s, "ray_start_s": start_s,
                          "s_per_entry_per_worker": ray_s * args.workers / len(changes),
                          "checked_entries_identical": same, "load_average_1min_before": load_before,
                          "load_average_1min_after": os.getloadavg()[0], "cores": os.cpu_count()},
                 notes="network initialised, not trained (cost only); a shared machine (load average above the core "
                       "count) slows every figure")


if __name__ == "__main__":
    main()
