"""Accuracy parity of bf16 autocast + channels-last training with fp32 training (a script, not a test).

The ResNet-8 student is trained from scratch with cross-entropy (crop + flip, SGD, cosine) on Fashion-MNIST for the
same epochs, once in fp32 NCHW and once with bf16 autocast + channels-last, for each of ``--seeds`` seeds (model init
and data order both follow the seed); the best epoch on validation is scored on the full 10,000-image test split.
A difference of means is called a finding only where it exceeds the seeds' spread (the larger standard deviation).
Needs a CPU with native bf16 (AVX-512 BF16 or AMX); elsewhere autocast would emulate bf16 and the comparison is
refused. Example (about 8 minutes on 2 cores)::

    python benchmarks/bf16_parity.py --subset 20000 --epochs 8 --seeds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from edgekd.config import TrainConfig
from edgekd.data import load_dataset
from edgekd.distill.trainer import Trainer, accuracy
from edgekd.models import create as create_model
from edgekd.runtime import Normalize
from edgekd.runtime.precision import torch_bf16_supported


def test_accuracy(data_dir: Path, subset: int, epochs: int, seed: int, bf16: bool) -> float:
    """Test accuracy of a ResNet-8 trained from ``seed`` in fp32 or in bf16 autocast + channels-last."""
    data = load_dataset("fashion-mnist", {"limit_train": subset}, data_dir=data_dir, val_fraction=0.1, seed=0)
    torch.manual_seed(seed)
    net = create_model("resnet8", num_classes=data.num_classes, in_channels=data.in_channels)
    config = TrainConfig(epochs=epochs, batch_size=128, lr=0.1, nesterov=True, warmup_epochs=1, amp=bf16,
                         channels_last=bf16, augment={"crop_padding": 2, "hflip": True})
    with tempfile.TemporaryDirectory() as workdir:
        trainer = Trainer(net, data, config, Path(workdir), seed=seed, label=f"{'bf16' if bf16 else 'fp32'} {seed}")
        trainer.fit()
    return accuracy(net, data.test, Normalize(data.mean, data.std))  # float32 weights either way


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--subset", type=int, default=20000, help="training images (a seeded stratified subset)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    if not torch_bf16_supported():
        sys.exit("this CPU has no native bf16 (AVX-512 BF16 or AMX): nothing to compare")
    results: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for seed in range(args.seeds):
        for name in results:
            results[name].append(test_accuracy(args.data_dir, args.subset, args.epochs, seed, name == "bf16"))
            print(f"seed {seed} {name}: test accuracy {results[name][-1]:.4f}", flush=True)
    mean = {name: statistics.mean(values) for name, values in results.items()}
    std = {name: statistics.stdev(values) if len(values) > 1 else 0.0 for name, values in results.items()}
    spread = max(std.values())
    difference = mean["bf16"] - mean["fp32"]
    verdict = "a finding" if abs(difference) > spread else "within the seeds' spread: parity"
    print(f"ResNet-8, {args.subset} images, {args.epochs} epochs, {args.seeds} seeds: "
          f"fp32 {mean['fp32']:.4f} ± {std['fp32']:.4f}, bf16 + channels-last {mean['bf16']:.4f} ± {std['bf16']:.4f}; "
          f"difference {difference:+.4f} ({verdict})")


if __name__ == "__main__":
    main()
