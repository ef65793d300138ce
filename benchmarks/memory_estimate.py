"""The memory guard's estimate of one training step against the measured growth of peak resident memory.

    python benchmarks/memory_estimate.py            # the default cases, one fresh process each
    python benchmarks/memory_estimate.py --case mobilenetv2 224 32 imagenet

Each case runs in its own process: build the model, estimate the step (:func:`edgekd.distill.memory.estimate_step`,
SGD with momentum), reset ``VmHWM`` (``/proc/self/clear_refs``), run one real step (normalise a flipped batch,
forward, cross-entropy, backward, optimiser step) and report ``VmHWM - VmRSS`` before the step. Linux only.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

CASES = [
    ("mobilenetv2", 224, 8, "imagenet"), ("mobilenetv2", 224, 32, "imagenet"),
    ("mobilenetv2_x0_5", 224, 32, "imagenet"),
    ("mobilenetv2", 224, 2, "small"), ("resnet18", 224, 16, "imagenet"), ("resnet50", 224, 8, "imagenet"),
    ("resnet8", 32, 128, "own"), ("mobilenetv2", 32, 64, "small"),
]


def measure(name: str, size: int, batch: int, layout: str, threads: int) -> str:
    import torch
    from torch import nn

    from edgekd.distill.memory import _proc_kib, estimate_step
    from edgekd.models import create

    torch.set_num_threads(threads)
    kwargs = {} if layout == "own" else {"small_input": layout == "small"}
    model = create(name, num_classes=10, **kwargs)
    estimate = estimate_step(model, (3, size, size), batch, teacher=None, optimizer="sgd")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.rand(batch, 3, size, size), torch.randint(0, 10, (batch,))
    Path("/proc/self/clear_refs").write_text("5")
    before = _proc_kib("/proc/self/status", "VmRSS") or 0
    nn.functional.cross_entropy(model((x.flip(-1) - 0.5) / 0.25), y).backward()
    optimizer.step()
    grown = (_proc_kib("/proc/self/status", "VmHWM") or 0) - before
    mib = 1 << 20
    return (f"{name:18} {size:4d} px  batch {batch:4d}  {layout:8}  estimate {estimate.total / mib:7.0f} MiB  "
            f"measured {grown / mib:7.0f} MiB  measured/estimate {grown / estimate.total:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs=4, metavar=("MODEL", "SIZE", "BATCH", "LAYOUT"),
                        help="one case (LAYOUT: imagenet, small or own); default: all of CASES, one process each")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.case:
        name, size, batch, layout = args.case
        print(measure(name, int(size), int(batch), layout, args.threads), flush=True)
        return
    for case in CASES:
        subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--case", *map(str, case)],
                       check=True)


if __name__ == "__main__":
    main()
