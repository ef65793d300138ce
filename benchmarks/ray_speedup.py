"""Benchmark of the executor (a script, not a test): a 6-sub-run ablation on Ray against the same sub-runs in
sequence, and Ray's scheduling overhead per task.

Figure 1 — six ablation sub-runs (variants no-kd, kd, dkd × seeds 0, 1; ResNet-8 student, plain8 teacher, digits,
``--epochs`` epochs each) through :func:`edgekd.stages.ablation.sub_run_task`, once with
``Executor(backend="sequential", threads_per_task=1)`` and once on a local Ray of ``--workers`` CPUs, one thread per
task. Speed-up = sequential seconds / Ray seconds, Ray and its workers already started (their start-up is reported
on its own, and the speed-up with it). The test accuracies of both must agree digit for digit. The teacher is
initialised, not trained: only the time counts.

Figure 2 — scheduling overhead: ``--empty`` tasks that do nothing (``abs(0)``) on the same Ray, after a warm-up
round; wall time per task.

The machine's load average (1 min) is recorded before and after: on a shared machine the ratio is distorted (two
task processes take a larger share of contended cores than one process), so only a quiet machine gives the figure.
Example (a few minutes on 2 cores)::

    python benchmarks/ray_speedup.py --epochs 20
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from edgekd.config import ExecutionConfig, LossTerm, ModelRef, TrainConfig
from edgekd.data import load_dataset
from edgekd.distill.ablation import dkd_term
from edgekd.executor import Executor
from edgekd.models import create
from edgekd.stages.ablation import sub_run_task
from records import write_record

KD = ([{"name": "kd", "weight": 0.9, "params": {"temperature": 4.0}}], 0.1)


def sub_runs(run_dir: Path, epochs: int) -> list[tuple[Any, ...]]:
    """The six (variant, seed) tasks of :func:`sub_run_task`, each in its own folder under ``run_dir``."""
    config = TrainConfig(epochs=epochs, batch_size=64, lr=0.05)
    teacher, student = ModelRef(name="plain8"), ModelRef(name="resnet8")
    terms = {"no-kd": ([], 1.0), "kd": ([LossTerm.model_validate(t) for t in KD[0]], KD[1]),
             "dkd": ([dkd_term(epochs)], 1.0)}
    tasks = []
    for variant, (losses, ce_weight) in terms.items():
        for seed in (0, 1):
            tasks.append((run_dir, Path(f"{variant}-{seed}"), variant, seed, [("student", student)],
                          [variant], config, (losses, ce_weight), None if variant == "no-kd" else teacher))
    return tasks


def timed(executor: Executor, tasks: list[tuple[Any, ...]], shared: tuple[Any, ...]) -> tuple[float, list[float]]:
    start = time.perf_counter()
    results = executor.map(sub_run_task, tasks, shared=shared)
    return time.perf_counter() - start, [r["test_accuracy"] for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20, help="epochs of each sub-run")
    parser.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray (one task each)")
    parser.add_argument("--empty", type=int, default=200, help="empty tasks for the scheduling overhead")
    args = parser.parse_args()
    import ray

    load_before = os.getloadavg()[0]
    data = load_dataset("digits", seed=0, val_fraction=0.1)
    torch.manual_seed(0)
    teacher = create("plain8", num_classes=10, in_channels=1).eval()
    with tempfile.TemporaryDirectory() as tmp:
        sequential = Executor(ExecutionConfig(backend="sequential", threads_per_task=1))
        seq_s, seq_acc = timed(sequential, sub_runs(Path(tmp) / "sequential", args.epochs), (data, teacher))
        print(f"sequential: {seq_s:.1f} s, test accuracies {seq_acc}")

        start = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, configure_logging=False, log_to_driver=False)
        init_s = time.perf_counter() - start
        on_ray = Executor(ExecutionConfig(backend="ray", threads_per_task=1))
        start = time.perf_counter()
        on_ray.map(abs, [(0,)] * (4 * args.workers))  # every worker started, torch and edgekd imported
        warm_s = time.perf_counter() - start
        ray_s, ray_acc = timed(on_ray, sub_runs(Path(tmp) / "ray", args.epochs), (data, teacher))
        print(f"ray ({args.workers} workers): {ray_s:.1f} s (+ {init_s:.1f} s to start Ray, {warm_s:.1f} s to start "
              f"its workers), accuracies {ray_acc}")
        if ray_acc != seq_acc:
            raise SystemExit("the Ray sub-runs' accuracies differ from the sequential ones")

        on_ray.map(abs, [(0,)] * args.empty)  # warm-up: every worker started
        start = time.perf_counter()
        on_ray.map(abs, [(0,)] * args.empty)
        per_task_ms = (time.perf_counter() - start) / args.empty * 1000
        ray.shutdown()
    load_after = os.getloadavg()[0]
    print(f"speed-up {seq_s / ray_s:.2f}x; scheduling overhead {per_task_ms:.2f} ms per empty task; "
          f"load average {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} cores")
    write_record("ray-speedup", title="6-sub-run ablation: local Ray (one thread per task) vs sequential",
                 figures={"sub_runs": 6, "epochs": args.epochs, "workers": args.workers,
                          "sequential_s": seq_s, "ray_s": ray_s, "ray_start_s": init_s, "workers_start_s": warm_s,
                          "speedup": seq_s / ray_s, "speedup_with_start": seq_s / (ray_s + init_s + warm_s),
                          "speedup_goal": 1.8, "identical_accuracies": ray_acc == seq_acc,
                          "test_accuracies": seq_acc, "empty_tasks": args.empty,
                          "overhead_ms_per_task": per_task_ms, "load_average_1min_before": load_before,
                          "load_average_1min_after": load_after, "cores": os.cpu_count()},
                 notes="teacher initialised, not trained (timing only); on a shared machine (load average above the "
                       "core count) the ratio is not a clean figure: two task processes take a larger share of "
                       "contended cores than one, so it can exceed the core count; re-run on a quiet machine")


if __name__ == "__main__":
    main()
