"""Training loop for teachers and students: cross-entropy plus weighted distillation terms.

Total loss per batch: ``ce_weight * CE(student(x), y) + sum_i weight_i * loss_i``, where a logit loss gets
``(student_logits, teacher_logits, target)`` and a feature loss gets the tapped features of both nets plus the extras
it declares in ``needs`` (labels, teacher class means, classifier heads; see :mod:`edgekd.distill.objective`). The data
are raw [0, 1] pixels; the trainer normalises them with the training split's mean/std (exports carry the same
normalisation inside their graph). The best epoch is chosen on the validation split, never on test.

Determinism: batch order, augmentation and mixing of epoch ``e`` come from a generator seeded by ``(data_seed, v)``,
``v = e`` or, with ``augment_views`` ``V``, ``v = e mod V`` (the epoch's *view*),
and the global RNG (dropout) is reseeded by ``(seed, e)``, so an epoch is the same whether or not the run was
interrupted before it. A checkpoint is written atomically after every epoch; :meth:`Trainer.fit` resumes from it.

Consistent teaching (Beyer et al., CVPR 2022): teacher and student see the same augmented and mixed batch; with
mixup/CutMix the cross-entropy uses the mixed targets (:mod:`edgekd.distill.mixing`). With logit-only losses the
teacher's logits are cached per view on disk (:mod:`edgekd.distill.teacher_cache`) and the teacher is not run again:
with ``augment_views`` ``V`` it runs in the first ``V`` epochs only, and a long schedule with strong augmentation costs
about as much as plain training (the student then sees each augmented view ``epochs / V`` times; Beyer et al. find
fresh views every epoch best, so ``V`` trades some of that gain for time).

Multi-process (``torchrun``, :mod:`edgekd._distributed`): the student is wrapped in DistributedDataParallel; every
rank draws the same seeded global batch of ``batch_size`` samples and trains on its contiguous slice, with its loss
weighted by ``slice_size * world_size / batch_size`` so the averaged gradient is the single-process one. Metrics are
summed over ranks; only rank 0 writes checkpoints and cache files. On CUDA, BatchNorm becomes SyncBatchNorm (batch
statistics over the global batch). On CPU (gloo) SyncBatchNorm does not exist in torch, so each rank normalises with
its own slice's statistics and the trajectory differs from one process by that much; running statistics are rank
0's (DDP broadcasts them), also before each validation.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from edgekd import _distributed as dist
from edgekd.config import TrainConfig
from edgekd.data import DataBundle, Split, augment_batch
from edgekd.distill._precision import Precision, keep_contiguous, narrow_strided_pointwise, resolve_numerics
from edgekd.distill.memory import check_step_fits
from edgekd.distill.mixing import MixedBatch, mix_batch
from edgekd.distill.objective import DistillTerm, Objective
from edgekd.distill.schedule import make_scheduler
from edgekd.distill.teacher_cache import TeacherCache, cache_key, module_digest, split_digest
from edgekd.errors import UserError
from edgekd.models import save_atomically
from edgekd.runtime.torch_artifact import Normalize

CHECKPOINT = "last.pt"
__all__ = ["CHECKPOINT", "DistillTerm", "TrainResult", "Trainer", "accuracy", "correct_count", "last_epoch_record"]


@runtime_checkable
class _EpochAware(Protocol):
    """A loss told the epoch about to run (0-based), e.g. for a warm-up (``EpochWarmup``)."""

    def set_epoch(self, epoch: int) -> None: ...


@dataclass
class TrainResult:
    """The best epoch (on validation) and the per-epoch history."""

    best_epoch: int
    best_val_accuracy: float
    history: list[dict[str, float]]
    state_dict: dict[str, torch.Tensor]
    memory: dict[str, Any] | None = None
    numerics: dict[str, Any] | None = None


def last_epoch_record(history: list[dict[str, float]]) -> dict[str, Any]:
    """``{last_epoch, last_val_accuracy}`` (1-based epoch) of a training ``history``, one entry per epoch: what a
    paper reporting the final epoch would keep, beside the best epoch on validation whose weights edgekd keeps."""
    return {"last_epoch": len(history), "last_val_accuracy": history[-1]["val_accuracy"] if history else None}


@torch.no_grad()
def correct_count(net: nn.Module, split: Split, normalize: nn.Module, batch_size: int = 512) -> int:
    """Number of samples of ``split`` whose top-1 prediction is right (eval mode restored afterwards)."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    correct = 0
    for start in range(0, len(split), batch_size):
        x = split.x[start : start + batch_size].to(device)
        y = split.y[start : start + batch_size].to(device)
        correct += int((net(normalize(x)).argmax(1) == y).sum())
    net.train(was_training)
    return correct


def accuracy(net: nn.Module, split: Split, normalize: nn.Module, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``net`` on ``split`` (eval mode restored to the previous mode afterwards)."""
    return correct_count(net, split, normalize, batch_size) / max(1, len(split))


class Trainer:
    """Trains ``net`` on ``data`` (optionally distilling from ``teacher``), checkpointing into ``workdir``.

    Args:
        seed: model-side seed (global RNG: lazily built loss parts, dropout); also the data seed unless
            ``config.data_seed`` is set.
        teacher_cache_dir: root of the teacher-output cache (e.g. ``run_dir/cache/teacher-logits``), shared by every
            training of a run; default ``workdir/teacher-logits``. Used when ``config.teacher_cache`` resolves to on.
    """

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
        teacher_cache_dir: Path | None = None,
    ) -> None:
        self.world = dist.world() if dist.active() else dist.World()
        self.device = dist.device() if self.world.distributed else _default_device()
        self.config = config
        self.numerics = resolve_numerics(config.amp, config.channels_last, self.device)
        self.precision = Precision(self.device, self.numerics.amp)
        self.memory_format = torch.channels_last if self.numerics.channels_last else torch.contiguous_format
        net = self._place(net)
        self.contiguous_layers = narrow_strided_pointwise(net, self.device) if self.numerics.channels_last else []
        self._release_contiguous = keep_contiguous(net, self.contiguous_layers)
        if self.world.distributed and self.device.type == "cuda":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        self.net = net
        self.model: nn.Module = net  # the DistributedDataParallel wrapper while fit() runs on several ranks
        self.data = data
        self.workdir = workdir
        self.seed = seed
        self.data_seed = seed if config.data_seed is None else config.data_seed
        self.teacher = self._place(teacher).eval() if teacher is not None else None
        self.terms = list(terms or [])
        self.objective = Objective(net, self.teacher, self.terms, ce_weight=ce_weight,
                                   label_smoothing=config.label_smoothing)
        self.console = console or Console(stderr=True, quiet=not self.world.is_main)
        self.label = label
        self.normalize = Normalize(data.mean, data.std).to(self.device)
        self.cache = self._teacher_cache(teacher_cache_dir)

    # -- set-up ---------------------------------------------------------------------------------------------------
    def _place(self, net: nn.Module) -> nn.Module:
        if self.numerics.channels_last:
            # Module.to(memory_format=...) is documented and works; torch's overload stubs leave it out
            return net.to(self.device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        return net.to(self.device)

    def _teacher_cache(self, root: Path | None) -> TeacherCache | None:
        """The cache of this run's teacher logits, or None when off (see ``TrainConfig.teacher_cache``)."""
        logit_only = self.objective.logit_only
        wanted = self.config.teacher_cache
        if wanted and not logit_only:
            raise UserError("train.teacher_cache: true needs a teacher and logit-only distillation losses (feature "
                            "losses need the live teacher); set it to null or false")
        if not (logit_only if wanted is None else wanted):
            return None
        assert self.teacher is not None
        cfg = self.config
        key = cache_key(
            teacher=module_digest(self.teacher), data=split_digest(self.data.train),
            normalization=[list(self.data.mean), list(self.data.std)], data_seed=self.data_seed,
            batch_size=cfg.batch_size, augment=cfg.augment.model_dump(mode="json"),
            numerics={"precision": self.precision.describe(), "channels_last": self.numerics.channels_last},
        )
        return TeacherCache(root or self.workdir / "teacher-logits", key, len(self.data.train), self.data.num_classes)

    def _optimizer(self) -> torch.optim.Optimizer:
        params = list(self.net.parameters()) + self.objective.parameters()
        cfg = self.config
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov
        )

    def _probe(self) -> None:
        """Let losses with lazily built parts create them, identically on every rank."""
        x, y = self.data.train.x[:2].to(self.device), self.data.train.y[:2].to(self.device)
        self.objective.probe(self.normalize(x), y)
        for term in self.terms:
            dist.broadcast_state(term.loss)

    def _rank_batch(self) -> int:
        """Samples of a global batch one rank trains on (at most)."""
        return -(-self.config.batch_size // self.world.world_size)

    def _check_memory(self) -> dict[str, Any] | None:
        """Refuse (UserError) a batch size whose training step would not fit in memory, before any training
        (:mod:`edgekd.distill.memory`); on CPU only (a GPU reports its own out-of-memory error)."""
        if self.device.type != "cpu":
            return None
        return check_step_fits(self.net, tuple(self.data.train.x.shape[1:]), self._rank_batch(), teacher=self.teacher,
                               optimizer=self.config.optimizer, label=self.label)

    # -- checkpoints ----------------------------------------------------------------------------------------------
    def _save(self, state: dict[str, Any]) -> None:
        if self.world.is_main:
            save_atomically(self.workdir / CHECKPOINT, state)

    def _load(self) -> dict[str, Any] | None:
        path = self.workdir / CHECKPOINT
        if not path.is_file():
            return None
        return torch.load(path, map_location=self.device, weights_only=True)

    # -- training -------------------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train for ``config.epochs`` epochs (resuming from the last checkpoint if any); return the best epoch."""
        if self.world.is_main:
            self.workdir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(self.seed)
        memory = self._check_memory()
        self.objective.prepare(self.data, self.normalize, self._rank_batch())
        self._probe()
        optimizer = self._optimizer()
        bs = self.config.batch_size
        steps = max(1, (len(self.data.train) + bs - 1) // bs)
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
            self.precision.load_state_dict(state.get("scaler", {}))
            start_epoch, best_acc, best_epoch = state["epoch"] + 1, state["best_acc"], state["best_epoch"]
            history, best_state = state["history"], state["best_state"]
            self.console.print(f"  [dim]{self.label}: resuming after epoch {start_epoch}[/dim]")
        if self.world.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.net, device_ids=ids)

        with self._progress() as progress:
            task = progress.add_task(self.label, total=self.config.epochs, completed=start_epoch, info="")
            for epoch in range(start_epoch, self.config.epochs):
                record = self._epoch(epoch, optimizer, scheduler)
                record["val_accuracy"] = self._val_accuracy()
                history.append(record)
                if record["val_accuracy"] > best_acc:
                    best_acc, best_epoch = record["val_accuracy"], epoch
                    best_state = copy.deepcopy(self.net.state_dict())
                self._save({
                    "epoch": epoch, "net": self.net.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "terms": [t.loss.state_dict() for t in self.terms],
                    "scaler": self.precision.state_dict(), "best_acc": best_acc, "best_epoch": best_epoch,
                    "history": history, "best_state": best_state,
                })
                info = f"loss {record['loss']:.3f}  val {record['val_accuracy']:.4f}  best {best_acc:.4f}"
                progress.update(task, advance=1, info=info)
                if not self.console.is_terminal:  # a log file or pipe sees no live bar: one line per epoch
                    self.console.print(f"  {self.label}: epoch {epoch + 1}/{self.config.epochs}  {info}  "
                                       f"{record['seconds']:.1f} s")
        self.objective.close()
        self._release_contiguous()
        self.model = self.net
        self.net.load_state_dict(best_state)
        numerics = self.numerics.record(self.precision, self.contiguous_layers)
        return TrainResult(best_epoch + 1, best_acc, history, best_state, memory, numerics)

    def _global_batch(self, index: torch.Tensor, generator: torch.Generator) -> MixedBatch:
        """The seeded global batch at ``index``: augmented, then mixed (identical on every rank)."""
        aug = self.config.augment
        x, y = self.data.train.x[index], self.data.train.y[index]
        x = augment_batch(x, generator=generator, crop_padding=aug.crop_padding, hflip=aug.hflip,
                          erase_prob=aug.random_erasing)  # x itself, no draws, when none is asked for
        return mix_batch(x, y, generator=generator, mixup_alpha=aug.mixup_alpha, cutmix_alpha=aug.cutmix_alpha)

    def view_batches(self, view: int) -> Iterator[MixedBatch]:
        """The global batches of augmented view ``view`` in training order, raw pixels augmented and mixed: what
        every epoch of that view trains on, and what the teacher-output cache holds the teacher's logits of."""
        bs, n = self.config.batch_size, len(self.data.train)
        generator = torch.Generator().manual_seed(self.data_seed * 1_000_003 + view)
        order = torch.randperm(n, generator=generator)
        for offset in range(0, n, bs):
            yield self._global_batch(order[offset : offset + bs], generator)

    def _epoch(self, epoch: int, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, float]:
        """One pass over the training split in a seeded order; this rank trains on its slice of every batch."""
        bs = self.config.batch_size
        view = epoch % self.config.augment_views if self.config.augment_views else epoch
        torch.manual_seed(self.seed * 1_000_003 + epoch)
        for term in self.terms:
            if isinstance(term.loss, _EpochAware):
                term.loss.set_epoch(epoch)
        cached = self.cache.load(view) if self.cache is not None else None
        if not dist.broadcast_flag(cached is not None):  # rank 0 decides, so that all ranks agree
            cached = None
        self.model.train()
        start_time = time.perf_counter()
        loss_sum = correct = torch.zeros((), dtype=torch.float64, device=self.device)
        seen = 0
        with self._recording(view, cached) as fresh:  # cold: record the live teacher's logits of this epoch
            for step, batch in enumerate(self.view_batches(view)):
                offset = step * bs
                size = len(batch.y_a)
                lo, hi = dist.shard(size, self.world)
                weight = (hi - lo) * self.world.world_size / size
                if hi == lo:  # fewer samples than ranks: join the gradient all-reduce with a zero-weighted sample
                    lo, hi = size - 1, size
                part = batch.rows(lo, hi).to(self.device)
                part = MixedBatch(self.normalize(part.x).contiguous(memory_format=self.memory_format), part.y_a,
                                  part.y_b, part.lam)
                teacher_logits = cached[offset + lo : offset + hi].to(self.device) if cached is not None else None
                loss, logits, teacher_logits = self._step(part, teacher_logits, weight, optimizer)
                scheduler.step()
                if weight:
                    if fresh is not None:
                        if teacher_logits is None:
                            raise RuntimeError("teacher cache: the objective returned no teacher logits to record")
                        fresh[offset + lo : offset + hi] = teacher_logits.detach().float().cpu()
                    loss_sum = loss_sum + loss.detach() * (hi - lo)
                    correct = correct + (logits.argmax(1) == part.target).sum()
                    seen += hi - lo
            if fresh is not None and self.world.distributed:  # every rank filled its own rows
                _sum_over_ranks(fresh, self.device)
        totals = dist.all_reduce_sum(torch.stack([loss_sum, correct.double(), torch.tensor(
            float(seen), dtype=torch.float64, device=self.device)]))
        loss_total, correct_total, seen_total = totals.tolist()
        return {
            "epoch": epoch + 1,
            "loss": loss_total / seen_total,
            "train_accuracy": correct_total / seen_total,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(time.perf_counter() - start_time, 3),
        }

    def _recording(self, view: int, cached: torch.Tensor | None) -> AbstractContextManager[torch.Tensor | None]:
        """Where the teacher logits of this epoch's view are written (on disk, :meth:`TeacherCache.record`), or None
        when the cache is off or already holds the view; rank 0's file becomes the cached view."""
        if self.cache is None or cached is not None:
            return contextlib.nullcontext()
        return self.cache.record(view, keep=self.world.is_main)

    def _step(
        self, part: MixedBatch, teacher_logits: torch.Tensor | None, weight: float, optimizer: torch.optim.Optimizer
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Forward, backward and optimiser step on this rank's part of a batch, its loss scaled by ``weight``."""
        with self.precision.autocast():
            loss, logits, teacher_logits = self.objective(self.model, part, teacher_logits)
        optimizer.zero_grad(set_to_none=True)
        self.precision.backward(loss * weight if weight != 1.0 else loss)
        dist.average_gradients(self.objective.parameters())
        if self.config.grad_clip is not None:
            self.precision.unscale(optimizer)
            nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], self.config.grad_clip)
        self.precision.step(optimizer)
        return loss, logits, teacher_logits

    def _val_accuracy(self) -> float:
        """Validation accuracy; with several ranks, each scores its slice with rank 0's BN statistics.

        Scored at the per-rank training batch size: the memory guard has checked that a training step at that size
        fits, and a no-grad forward of the same batch holds less (no saved activations, no gradients)."""
        if self.world.distributed:
            dist.broadcast_state(self.net)
        split = self.data.val
        lo, hi = dist.shard(len(split), self.world)
        part = split.take(torch.arange(lo, hi))
        counts = torch.tensor([correct_count(self.net, part, self.normalize, self._rank_batch()), hi - lo],
                              dtype=torch.float64, device=self.device)
        correct, total = dist.all_reduce_sum(counts).tolist()
        return correct / max(1.0, total)

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("epochs"),
            TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=self.console, transient=False,
        )


def _sum_over_ranks(rows: torch.Tensor, device: torch.device, chunk: int = 1 << 16) -> None:
    """Sum a CPU tensor over the ranks in place, ``chunk`` rows at a time through ``device`` (NCCL needs CUDA)."""
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk].to(device)
        rows[start : start + chunk] = dist.all_reduce_sum(part).cpu()


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
