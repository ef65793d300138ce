"""An ensemble teacher: M copies of one model trained with seeds ``seed``, ``seed + 1``, ..., averaged on logits.

Averaging the logits of independently trained networks gives a more accurate and better calibrated teacher than any
one of them (Lakshminarayanan et al., "Simple and Scalable Predictive Uncertainty Estimation using Deep Ensembles",
NeurIPS 2017; Hinton et al., 2015, distil an ensemble into one net). Each member is a resumable step of its own
(:func:`~edgekd.distill.chain.train_chain` with one link, in ``workdir/member-<m>/``): an interrupted ensemble
continues at its first unfinished member, and a finished one is loaded, not retrained::

    teacher, records = train_ensemble(lambda: create("resnet20", num_classes=10, in_channels=1), data, config,
                                      Path("runs/x/teacher"), members=3, seed=0)

The result is a :class:`~edgekd.models.ensemble.Ensemble` in eval mode; the trainer's teacher-output cache keys it by
all members' weights (its state dict holds them all).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from torch import nn

from edgekd.config import TrainConfig
from edgekd.data import DataBundle
from edgekd.distill.chain import Link, train_chain
from edgekd.models.ensemble import Ensemble


def member_name(index: int) -> str:
    """Folder and label of member ``index`` (0-based): ``member-1``, ``member-2``, ..."""
    return f"member-{index + 1}"


def train_ensemble(
    build: Callable[[], nn.Module],
    data: DataBundle,
    config: TrainConfig,
    workdir: Path,
    *,
    members: int,
    seed: int = 0,
    console: Console | None = None,
) -> tuple[Ensemble, list[dict[str, Any]]]:
    """Train ``members`` nets from ``build`` with cross-entropy, member ``m`` with seed ``seed + m`` (initial weights,
    batch order, augmentation), and return their ensemble with one record per member.

    A record is the member's step record (``val_accuracy`` of its best epoch, ``history``, ``reused``, ...) plus its
    ``seed`` and its training ``seconds`` (the sum of its epochs' times).
    """
    if members < 1:
        raise ValueError(f"an ensemble needs at least one member, got {members}")
    nets: list[nn.Module] = []
    records: list[dict[str, Any]] = []
    for index in range(members):
        step = train_chain([Link(member_name(index), build)], data, config, workdir, seed=seed + index,
                           console=console)[0]
        nets.append(step.net)
        seconds = sum(float(epoch.get("seconds", 0.0)) for epoch in step.record["history"])
        records.append({**step.record, "seed": seed + index, "seconds": round(seconds, 3)})
    return Ensemble(nets).eval(), records
