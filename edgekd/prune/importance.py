"""Importance ``I(st, end, c)`` of each LayerMerge table entry (Kim et al., ICML 2024, section 4).

For each entry, only that change is applied to the pretrained network (:meth:`Plan.single`), the result is briefly
fine-tuned and its accuracy measured on the validation split (held out from train); the normalised importance is

    I = exp((acc − acc₀) / 100)      with accuracies in percent (the paper's code: ``exp(val_acc / 100)`` of the
                                     accuracy change), i.e. ``exp(acc − acc₀)`` with accuracies in [0, 1],

``acc₀`` being the unpruned network's validation accuracy. (Dividing every importance by ``exp(acc₀)`` does not
change the DP's argmax.) The paper fine-tunes one epoch on ImageNet; here ``steps`` SGD steps of cross-entropy.

``mode="proxy"`` is a cheap stand-in *not in the paper*: no gradient step; the BN running statistics are
re-estimated on ``steps`` training batches (the change shifts every later layer's input distribution) and the
accuracy is taken as is. It ranks entries much faster but less faithfully; reports must say which mode ran.

Entries are independent: :func:`measure_importance` computes the share ``entries[rank::world_size]`` (ranks of a
``torchrun`` job each take theirs), each entry a task of :mod:`edgekd.executor` when one is given (Ray tasks on this
machine or a cluster), and stores every result as its own JSON file as soon as it is known, so a killed run resumes
entry by entry and ranks or tasks never write the same file.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from edgekd._atomic import atomic_write_json
from edgekd.data import DataBundle
from edgekd.distill.trainer import accuracy
from edgekd.executor import Executor
from edgekd.prune.apply import build_pruned
from edgekd.prune.graph import Chain
from edgekd.prune.segments import Plan, Segment
from edgekd.runtime.torch_artifact import Normalize

BASE = "base"


@dataclass(frozen=True)
class ImportanceSettings:
    """How each entry is scored: ``finetune`` (the paper) or ``proxy`` (module docstring)."""

    mode: Literal["finetune", "proxy"] = "finetune"
    steps: int = 50
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("finetune", "proxy") or self.steps < 0 or self.batch_size < 1:
            raise ValueError(f"invalid importance settings: {self}")


def importance_value(acc: float, base: float) -> float:
    """``exp(acc − acc₀)`` for accuracies in [0, 1] (the paper's ``exp(Δacc% / 100)``)."""
    return math.exp(acc - base)


class ImportanceStore:
    """One JSON file per entry under ``root`` (written atomically), tagged with the settings that produced it."""

    def __init__(self, root: Path, settings: ImportanceSettings) -> None:
        self.root = Path(root)
        self.settings = asdict(settings)

    def _path(self, key: str) -> Path:
        return self.root / (re.sub(r"[^A-Za-z0-9_.-]", "_", key) + ".json")

    def get(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        if not path.is_file():
            return None
        record = json.loads(path.read_text())
        return record if record.get("settings") == self.settings and record.get("key") == key else None

    def put(self, key: str, record: dict[str, Any]) -> None:
        atomic_write_json(self._path(key), {"key": key, "settings": self.settings, **record})


def _batch(data: DataBundle, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    index = torch.randint(len(data.train), (size,), generator=generator)
    return data.train.x[index], data.train.y[index]


def adapt(net: nn.Module, data: DataBundle, settings: ImportanceSettings) -> nn.Module:
    """Fine-tune (``finetune``) or re-estimate BN statistics (``proxy``) of ``net`` in place, seeded."""
    normalize = Normalize(data.mean, data.std)
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    if settings.mode == "proxy":
        bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not bns or settings.steps == 0:
            return net.eval()
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the batches
        net.train()
        with torch.no_grad():
            for _ in range(settings.steps):
                x, _ = _batch(data, settings.batch_size, generator)
                net(normalize(x))
        return net.eval()
    optimizer = torch.optim.SGD(net.parameters(), lr=settings.lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay)
    net.train()
    for _ in range(settings.steps):
        x, y = _batch(data, settings.batch_size, generator)
        loss = F.cross_entropy(net(normalize(x)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return net.eval()


def plan_accuracy(chain: Chain, plan: Plan, data: DataBundle, settings: ImportanceSettings, *,
                  adapted: bool = True) -> float:
    """Validation accuracy of ``plan``'s pruned network, after :func:`adapt` if ``adapted`` (every entry is
    adapted, as in the paper, even one that changes nothing; the base accuracy ``acc₀`` is not)."""
    net = build_pruned(chain, plan)
    if adapted:
        adapt(net, data, settings)
    return accuracy(net.eval(), data.val, Normalize(data.mean, data.std))


def score_entry(chain: Chain, data: DataBundle, settings: ImportanceSettings, store: ImportanceStore, base: float,
                key: str, segment: Segment) -> dict[str, Any]:
    """Score one entry and store its record (an executor task; a stored entry is read back, not recomputed)."""
    record = store.get(key)
    if record is None:
        acc = plan_accuracy(chain, Plan.single(chain, segment), data, settings)
        record = {"segment": [segment.st, segment.end, list(segment.kept)], "accuracy": acc,
                  "base_accuracy": base, "importance": importance_value(acc, base)}
        store.put(key, record)
    return record


def measure_importance(chain: Chain, changes: Sequence[tuple[str, Segment]], data: DataBundle,
                       settings: ImportanceSettings, store: ImportanceStore, *, rank: int = 0, world_size: int = 1,
                       console: Console | None = None, executor: Executor | None = None) -> dict[str, float]:
    """Score this rank's share ``changes[rank::world_size]`` (``(key, segment)`` pairs), skipping stored ones.

    With an ``executor`` the unstored entries of the share are its tasks (Ray tasks, or in sequence with its
    threads per task); without one they are scored here, one after the other. Returns ``{key: importance}`` for the
    share; every rank also stores (or finds) the base accuracy.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of {world_size}")
    base_record = store.get(BASE)
    if base_record is None:
        base_record = {"accuracy": plan_accuracy(chain, Plan.unpruned(chain), data, settings,
                                                    adapted=False)}
        if rank == 0:
            store.put(BASE, base_record)
    base = float(base_record["accuracy"])
    share = list(changes)[rank::world_size]
    console = console or Console(stderr=True, quiet=rank != 0)
    with Progress(TextColumn(f"[bold]importance ({settings.mode})[/bold]"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console) as progress:
        task = progress.add_task("importance", total=len(share), info="")

        def done(key: str, record: dict[str, Any]) -> None:
            progress.update(task, advance=1, info=f"{key}: acc {record['accuracy']:.4f}")

        todo = share
        if executor is not None:
            todo = [(key, segment) for key, segment in share if store.get(key) is None]
            for key, _ in share:
                if (stored := store.get(key)) is not None:
                    done(key, stored)
            executor.map(score_entry, todo, shared=(chain, data, settings, store, base),
                         on_done=lambda i, record: done(todo[i][0], record))
        else:
            for key, segment in share:
                done(key, score_entry(chain, data, settings, store, base, key, segment))
    return {key: float(store.get(key)["importance"]) for key, _ in share}  # type: ignore[index]


def load_importance(store: ImportanceStore, keys: Sequence[str]) -> dict[str, float]:
    """Every stored importance of ``keys`` (after all ranks finished); a missing one is an error."""
    missing = [k for k in keys if store.get(k) is None]
    if missing:
        raise RuntimeError(f"{len(missing)} importance entries are missing from {store.root}, e.g. {missing[0]}")
    return {k: float(store.get(k)["importance"]) for k in keys}  # type: ignore[index]
