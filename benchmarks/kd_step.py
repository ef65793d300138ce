"""Benchmark of edgekd's trainer (a script, not a test): its overhead, and what the teacher-output cache saves.

Figure 1 — one KD training step of :class:`edgekd.distill.trainer.Trainer` against a minimal hand-written PyTorch
KD loop (same ResNet-20 teacher and ResNet-8 student, same Fashion-MNIST batches, same SGD, Hinton KD with T = 4,
``0.1 CE + 0.9 KD``): per-step time = one epoch of ``--steps`` steps divided by the steps. Target ≤ 1.10.

Figure 2 — one KD epoch of the trainer with the teacher-output cache warm (the teacher's logits of that epoch already
on disk) against one plain epoch of the same student without a teacher (cross-entropy only). Target ≤ 1.2; the cold
KD epoch (teacher run live, the cache being filled) is printed for reference.

Runs are interleaved (A B, B A, A B, ...) and medians are reported, so a machine that gets slower or faster during
the run biases neither side. Example (about 3 minutes on 2 cores)::

    python benchmarks/kd_step.py --subset 4000 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.config import TrainConfig
from edgekd.data import DataBundle, Split, load_dataset
from edgekd.distill.losses import create as create_loss
from edgekd.distill.trainer import DistillTerm, Trainer
from edgekd.models import create as create_model

TEMPERATURE, CE_WEIGHT, KD_WEIGHT = 4.0, 0.1, 0.9
SGD = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}


def fashion_mnist(data_dir: Path, train: int, val: int) -> DataBundle:
    """Fashion-MNIST with the first ``train`` training and ``val`` validation images."""
    bundle = load_dataset("fashion-mnist", {}, data_dir=data_dir, val_fraction=0.1, seed=0)
    cut = lambda split, n: Split(split.x[:n], split.y[:n])  # noqa: E731
    return DataBundle(bundle.name, cut(bundle.train, train), cut(bundle.val, val), bundle.test, bundle.num_classes,
                      bundle.in_channels, bundle.image_size, bundle.mean, bundle.std, bundle.class_names,
                      bundle.source)


def models(data: DataBundle) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """The ResNet-20 teacher (eval mode) and the ResNet-8 student's initial weights (every run starts from them)."""
    torch.manual_seed(0)
    shape = {"num_classes": data.num_classes, "in_channels": data.in_channels}
    teacher = create_model("resnet20", **shape).eval()
    student = create_model("resnet8", **shape)
    return teacher, student.state_dict()


def fresh_student(data: DataBundle, weights: dict[str, torch.Tensor]) -> nn.Module:
    student = create_model("resnet8", num_classes=data.num_classes, in_channels=data.in_channels)
    student.load_state_dict(weights)
    return student


def train_config(batch_size: int, teacher_cache: bool | None) -> TrainConfig:
    return TrainConfig(epochs=1, batch_size=batch_size, schedule="constant", teacher_cache=teacher_cache, **SGD)


def edgekd_epoch(data: DataBundle, teacher: nn.Module | None, weights: dict[str, torch.Tensor], batch_size: int,
                 *, cache: bool | None = None, cache_dir: Path | None = None) -> float:
    """Seconds of one training epoch of edgekd's Trainer (its own timing: batches only, no validation)."""
    terms = [DistillTerm(KD_WEIGHT, create_loss("kd", temperature=TEMPERATURE), "logit")] if teacher else []
    with tempfile.TemporaryDirectory() as workdir:
        trainer = Trainer(fresh_student(data, weights), data, train_config(batch_size, cache), Path(workdir),
                          teacher=teacher, terms=terms, ce_weight=CE_WEIGHT if teacher else 1.0,
                          teacher_cache_dir=cache_dir, label="edgekd")
        trainer.console.quiet = True
        return trainer.fit().history[0]["seconds"]


def hand_written_epoch(data: DataBundle, teacher: nn.Module, weights: dict[str, torch.Tensor], batch_size: int
                       ) -> float:
    """Seconds of one epoch of the textbook KD loop: normalise, student, teacher under no_grad, CE + KD, SGD."""
    student = fresh_student(data, weights).train()
    optimizer = torch.optim.SGD(student.parameters(), **SGD)
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    x_all, y_all = data.train.x, data.train.y
    order = torch.randperm(len(y_all), generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    for first in range(0, len(order), batch_size):
        index = order[first : first + batch_size]
        x, y = (x_all[index] - mean) / std, y_all[index]
        logits = student(x)
        with torch.no_grad():
            soft = F.softmax(teacher(x) / TEMPERATURE, dim=1)
        kd = F.kl_div(F.log_softmax(logits / TEMPERATURE, dim=1), soft, reduction="batchmean") * TEMPERATURE**2
        loss = CE_WEIGHT * F.cross_entropy(logits, y) + KD_WEIGHT * kd
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def interleaved(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Median seconds of each run, the runs taking turns ``repeats`` times after one untimed warm-up each; the order
    alternates (A B, B A, ...) so that neither side always runs first."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(repeats):
        names = list(runs) if repeat % 2 == 0 else list(reversed(runs))
        for name in names:
            times[name].append(runs[name]())
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30, help="steps per timed epoch of figure 1")
    parser.add_argument("--subset", type=int, default=54000, help="training images of figure 2's epochs")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = fashion_mnist(args.data_dir, max(args.subset, args.steps * args.batch_size), 256)
    teacher, weights = models(data)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); ResNet-20 -> ResNet-8 on Fashion-MNIST, "
          f"batch {args.batch_size}, medians of {args.repeats} interleaved repeats")

    step_data = fashion_mnist(args.data_dir, args.steps * args.batch_size, 256)
    steps = interleaved({
        "edgekd": lambda: edgekd_epoch(step_data, teacher, weights, args.batch_size, cache=False),
        "hand": lambda: hand_written_epoch(step_data, teacher, weights, args.batch_size),
    }, args.repeats)
    ms = {name: 1000 * seconds / args.steps for name, seconds in steps.items()}
    print(f"[1] KD step: edgekd {ms['edgekd']:.1f} ms, hand-written loop {ms['hand']:.1f} ms, "
          f"ratio {ms['edgekd'] / ms['hand']:.3f} (target <= 1.10)")

    with tempfile.TemporaryDirectory() as cache_dir:
        cache = Path(cache_dir)
        epochs = interleaved({
            "plain": lambda: edgekd_epoch(data, None, weights, args.batch_size),
            "kd-cold": lambda: edgekd_epoch(data, teacher, weights, args.batch_size, cache=True,
                                            cache_dir=Path(tempfile.mkdtemp(dir=cache))),
            "kd-warm": lambda: edgekd_epoch(data, teacher, weights, args.batch_size, cache=True, cache_dir=cache),
        }, args.repeats)
    print(f"[2] epoch of {len(data.train)} images: plain student {epochs['plain']:.2f} s, KD with warm teacher cache "
          f"{epochs['kd-warm']:.2f} s, ratio {epochs['kd-warm'] / epochs['plain']:.3f} (target <= 1.2); "
          f"KD with the teacher run live (cold cache) {epochs['kd-cold']:.2f} s, "
          f"ratio {epochs['kd-cold'] / epochs['plain']:.3f}")


if __name__ == "__main__":
    main()
