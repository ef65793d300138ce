"""Training loop for teachers and students: cross-entropy plus weighted distillation terms.

Total loss per batch: ``ce_weight * CE(student(x), y) + sum_i weight_i * loss_i``, where a logit loss gets
``(student_logits, teacher_logits, target)`` and a feature loss gets the tapped features of both nets. The data are
raw [0, 1] pixels; the trainer normalises them with the training split's mean/std (exports carry the same
normalisation inside their graph). Batch order and augmentation come from generators seeded by ``(seed, epoch)``, so
an epoch is the same whether or not the run was interrupted before it. A checkpoint is written atomically after every
epoch; :meth:`Trainer.fit` resumes from it. The best epoch is chosen on the validation split, never on test.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from edgekd.config import TrainConfig
from edgekd.data import DataBundle, Split, augment_batch
from edgekd.distill.schedule import make_scheduler
from edgekd.runtime.torch_artifact import Normalize
from edgekd._atomic import atomic_path

CHECKPOINT = "last.pt"


@dataclass
class DistillTerm:
    """One weighted distillation loss with the module paths it taps (feature losses only)."""

    weight: float
    loss: nn.Module
    kind: str
    student_taps: list[str] = field(default_factory=list)
    teacher_taps: list[str] = field(default_factory=list)


@dataclass
class TrainResult:
    """The best epoch (on validation) and the per-epoch history."""

    best_epoch: int
    best_val_accuracy: float
    history: list[dict[str, float]]
    state_dict: dict[str, torch.Tensor]


@torch.no_grad()
def accuracy(net: nn.Module, split: Split, normalize: nn.Module, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``net`` on ``split`` (eval mode restored to the previous mode afterwards)."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    correct = 0
    for start in range(0, len(split), batch_size):
        x = split.x[start : start + batch_size].to(device)
        y = split.y[start : start + batch_size].to(device)
        correct += int((net(normalize(x)).argmax(1) == y).sum())
    net.train(was_training)
    return correct / max(1, len(split))


class Trainer:
    """Trains ``net`` on ``data`` (optionally distilling from ``teacher``), checkpointing into ``workdir``."""

    def __init__(
        self,
        net: nn.Module,
        data: DataBundle,
        config: TrainConfig,
        workdir: Path,
        *,
        seed: int = 0,
        teacher: nn.Module | None = None,
        terms: list[DistillTerm] | None = None,
        ce_weight: float = 1.0,
        console: Console | None = None,
        label: str = "train",
    ) -> None:
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.net = net.to(self.device)
        self.data = data
        self.config = config
        self.workdir = workdir
        self.seed = seed
        self.teacher = teacher.to(self.device).eval() if teacher is not None else None
        self.terms = list(terms or [])
        self.ce_weight = ce_weight
        self.console = console or Console(stderr=True)
        self.label = label
        self.normalize = Normalize(data.mean, data.std).to(self.device)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        if self.terms and self.teacher is None:
            raise ValueError("distillation terms need a teacher")
        self._taps = self._open_taps()

    # -- set-up ---------------------------------------------------------------------------------------------------
    def _open_taps(self) -> list[tuple[Any, Any]]:
        taps = []
        for term in self.terms:
            if term.kind != "feature":
                taps.append((None, None))
                continue
            from edgekd.distill.taps import FeatureTaps

            taps.append((FeatureTaps(self.net, term.student_taps), FeatureTaps(self.teacher, term.teacher_taps)))
        return taps

    def _optimizer(self) -> torch.optim.Optimizer:
        params = list(self.net.parameters())
        for term in self.terms:
            params += [p for p in term.loss.parameters() if p.requires_grad]
        cfg = self.config
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov
        )

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Total loss and student logits for one normalised batch."""
        logits = self.net(x)
        total = self.ce_weight * self.criterion(logits, y)
        if self.teacher is not None and self.terms:
            with torch.no_grad():
                teacher_logits = self.teacher(x)
            for term, (s_taps, t_taps) in zip(self.terms, self._taps):
                if term.weight == 0:
                    continue
                if term.kind == "feature":
                    value = term.loss(s_taps.features(), t_taps.features())
                else:
                    value = term.loss(logits, teacher_logits, y)
                total = total + term.weight * value
        return total, logits

    def _probe(self) -> None:
        """One forward pass so losses with lazily built parts (e.g. FitNets connectors) create their parameters."""
        if not self.terms:
            return
        x = self.normalize(self.data.train.x[:2].to(self.device))
        y = self.data.train.y[:2].to(self.device)
        with torch.no_grad():
            self._loss(x, y)

    # -- checkpoints ----------------------------------------------------------------------------------------------
    def _save(self, state: dict[str, Any]) -> None:
        with atomic_path(self.workdir / CHECKPOINT) as tmp:
            torch.save(state, tmp)

    def _load(self) -> dict[str, Any] | None:
        path = self.workdir / CHECKPOINT
        if not path.is_file():
            return None
        return torch.load(path, map_location=self.device, weights_only=True)

    # -- training -------------------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train for ``config.epochs`` epochs (resuming from the last checkpoint if any); return the best epoch."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(self.seed)
        self._probe()
        optimizer = self._optimizer()
        train = self.data.train
        bs = self.config.batch_size
        steps = max(1, (len(train) + bs - 1) // bs)
        scheduler = make_scheduler(optimizer, self.config, steps)
        start_epoch, best_acc, best_epoch = 0, -1.0, -1
        history: list[dict[str, float]] = []
        best_state = copy.deepcopy(self.net.state_dict())
        if (state := self._load()) is not None:
            self.net.load_state_dict(state["net"])
            for term, term_state in zip(self.terms, state["terms"]):
                term.loss.load_state_dict(term_state)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            start_epoch, best_acc, best_epoch = state["epoch"] + 1, state["best_acc"], state["best_epoch"]
            history, best_state = state["history"], state["best_state"]
            self.console.print(f"  [dim]{self.label}: resuming after epoch {start_epoch}[/dim]")

        with self._progress() as progress:
            task = progress.add_task(self.label, total=self.config.epochs, completed=start_epoch, info="")
            for epoch in range(start_epoch, self.config.epochs):
                record = self._epoch(epoch, optimizer, scheduler, steps)
                record["val_accuracy"] = accuracy(self.net, self.data.val, self.normalize)
                history.append(record)
                if record["val_accuracy"] > best_acc:
                    best_acc, best_epoch = record["val_accuracy"], epoch
                    best_state = copy.deepcopy(self.net.state_dict())
                self._save({
                    "epoch": epoch, "net": self.net.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "terms": [t.loss.state_dict() for t in self.terms],
                    "best_acc": best_acc, "best_epoch": best_epoch, "history": history, "best_state": best_state,
                })
                progress.update(task, advance=1, info=(
                    f"loss {record['loss']:.3f}  val {record['val_accuracy']:.4f}  best {best_acc:.4f}"))
        for s_taps, t_taps in self._taps:
            if s_taps is not None:
                s_taps.close()
                t_taps.close()
        self.net.load_state_dict(best_state)
        return TrainResult(best_epoch + 1, best_acc, history, best_state)

    def _epoch(self, epoch: int, optimizer: torch.optim.Optimizer, scheduler: Any, steps: int) -> dict[str, float]:
        """One pass over the training split in a seeded order."""
        cfg = self.config
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        for term in self.terms:
            if hasattr(term.loss, "set_epoch"):
                term.loss.set_epoch(epoch)
        order = torch.randperm(len(self.data.train), generator=generator)
        self.net.train()
        start = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        for step in range(steps):
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            x, y = self.data.train.x[idx], self.data.train.y[idx]
            if cfg.augment.crop_padding or cfg.augment.hflip:
                x = augment_batch(x, generator=generator, crop_padding=cfg.augment.crop_padding,
                                  hflip=cfg.augment.hflip)
            x, y = self.normalize(x.to(self.device)), y.to(self.device)
            loss, logits = self._loss(x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            loss_sum += float(loss) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        return {
            "epoch": epoch + 1,
            "loss": loss_sum / seen,
            "train_accuracy": correct / seen,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(time.perf_counter() - start, 3),
        }

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("epochs"),
            TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=self.console, transient=False,
        )
