"""Benchmark of fast training on this CPU (a script, not a test): bf16 autocast + channels-last, and the augmented
teacher-output cache, against plain fp32 training.

Figure 1 — one training epoch (cross-entropy, crop + flip) of the ResNet-8 student and of the ResNet-20 teacher on
Fashion-MNIST, batch 128: fp32 NCHW against what ``amp: null, channels_last: null`` chooses on this CPU (bf16 autocast
+ channels-last where it computes bf16 natively, AVX-512 BF16 or AMX; else fp32 again, and the ratio is ~1).

Figure 2 — one KD epoch of the student (Hinton KD from the ResNet-20 teacher, same augmentation, automatic numerics):
teacher run live, teacher logits read from the cache, and the plain epoch of figure 1. With ``augment_views: V`` a
schedule of E epochs runs the teacher live in V of them, so its cost is ``V * live + (E - V) * cached``; the
ratio of that to E plain epochs is printed for the fmnist-deploy recipe's E and V.

Runs are interleaved and medians reported (see :func:`kd_step.interleaved`). The CPU's features are printed first.
Example (about 6 minutes on 2 cores)::

    python benchmarks/train_speed.py --subset 6400 --repeats 3
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.config import TrainConfig
from edgekd.data import DataBundle
from edgekd.distill.losses import create as create_loss
from edgekd.distill.trainer import DistillTerm, Trainer
from edgekd.models import create as create_model
from edgekd.runtime.precision import torch_bf16_supported
from kd_step import CE_WEIGHT, KD_WEIGHT, TEMPERATURE, fashion_mnist, interleaved

AUGMENT = {"crop_padding": 2, "hflip": True}


def epoch_seconds(data: DataBundle, model: str, numerics: dict[str, Any], *, teacher: nn.Module | None = None,
                  cache_dir: Path | None = None) -> float:
    """Seconds of one epoch of edgekd's Trainer (batches only), from the same initial weights every time."""
    torch.manual_seed(0)
    net = create_model(model, num_classes=data.num_classes, in_channels=data.in_channels)
    terms = [DistillTerm(KD_WEIGHT, create_loss("kd", temperature=TEMPERATURE), "logit")] if teacher else []
    config = TrainConfig(epochs=1, batch_size=128, lr=0.1, schedule="constant", augment=AUGMENT,
                         teacher_cache=cache_dir is not None if teacher else None, **numerics)
    with tempfile.TemporaryDirectory() as workdir:
        trainer = Trainer(net, data, config, Path(workdir), teacher=teacher, terms=terms,
                          ce_weight=CE_WEIGHT if teacher else 1.0, teacher_cache_dir=cache_dir, label=model)
        trainer.console.quiet = True
        return trainer.fit().history[0]["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--subset", type=int, default=6400, help="training images per timed epoch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=50, help="E of the schedule estimate (fmnist-deploy: 50)")
    parser.add_argument("--views", type=int, default=8, help="V of the schedule estimate (fmnist-deploy: 8)")
    args = parser.parse_args()
    data = fashion_mnist(args.data_dir, args.subset, 256)
    fp32 = {"amp": False, "channels_last": False}
    auto: dict[str, Any] = {"amp": None, "channels_last": None}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, AVX-512 BF16 {torch.cpu._is_avx512_bf16_supported()}, "
          f"AMX {torch.cpu._is_amx_tile_supported()} -> automatic numerics: "
          f"{'bf16 autocast + channels-last' if torch_bf16_supported() else 'fp32 (no native bf16)'}")
    print(f"Fashion-MNIST, {len(data.train)} images per epoch, batch 128, crop + flip; medians of {args.repeats}")
    for model in ("resnet8", "resnet20"):
        t = interleaved({
            "fp32": lambda m=model: epoch_seconds(data, m, fp32),
            "auto": lambda m=model: epoch_seconds(data, m, auto),
        }, args.repeats)
        print(f"[1] {model}: fp32 NCHW {t['fp32']:.2f} s, automatic {t['auto']:.2f} s per epoch, "
              f"speed-up {t['fp32'] / t['auto']:.2f}x")

    torch.manual_seed(1)
    teacher = create_model("resnet20", num_classes=data.num_classes, in_channels=data.in_channels).eval()
    with tempfile.TemporaryDirectory() as root:
        warm = Path(root) / "warm"
        epoch_seconds(data, "resnet8", auto, teacher=teacher, cache_dir=warm)  # fills the cache of view 0
        t = interleaved({
            "plain-fp32": lambda: epoch_seconds(data, "resnet8", fp32),
            "plain": lambda: epoch_seconds(data, "resnet8", auto),
            "live": lambda: epoch_seconds(data, "resnet8", auto, teacher=teacher),
            "cached": lambda: epoch_seconds(data, "resnet8", auto, teacher=teacher, cache_dir=warm),
        }, args.repeats)
    e, v = args.epochs, args.views
    schedule = (v * t["live"] + (e - v) * t["cached"]) / (e * t["plain"])
    print(f"[2] resnet8 KD epoch (automatic numerics): teacher live {t['live']:.2f} s, cached {t['cached']:.2f} s, "
          f"plain {t['plain']:.2f} s (fp32 plain {t['plain-fp32']:.2f} s); cached / plain "
          f"{t['cached'] / t['plain']:.2f}, live / plain {t['live'] / t['plain']:.2f}")
    print(f"    {e} KD epochs with augment_views {v}: {schedule:.2f}x plain training "
          f"(live teacher every epoch: {t['live'] / t['plain']:.2f}x; against fp32 plain: "
          f"{schedule * t['plain'] / t['plain-fp32']:.2f}x)")


if __name__ == "__main__":
    main()
