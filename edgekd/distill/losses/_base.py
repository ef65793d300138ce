"""Machinery shared by every distillation loss: the registry, typed hyper-parameters, the two calling conventions.

A loss class declares its hyper-parameters once, as a pydantic model ``Params`` (typed, with defaults and
descriptions, unknown keys rejected); :func:`create` and ``edgekd zoo`` read everything from that declaration.
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import Tensor, nn

from edgekd._registry import Registry
from edgekd.errors import UserError

LOSSES: Registry[type[DistillLoss]] = Registry("loss")

#: Extra keyword arguments a feature loss may declare in ``needs``; the trainer supplies exactly those.
EXTRAS: dict[str, str] = {
    "target": "class labels of the batch, int64 tensor of shape (N,)",
    "teacher_class_means": "list (one per tapped pair) of (num_classes, D) teacher embedding means over the "
    "training split, see edgekd.distill.losses.nd.ClassMeans",
    "student_head": "the student's classifier, an nn.Linear(features -> num_classes) (gets gradients)",
    "teacher_head": "the teacher's classifier, an nn.Linear(features -> num_classes) (never gets gradients)",
}

L = TypeVar("L", bound="type[DistillLoss]")


class Hparams(BaseModel):
    """Base of every loss's hyper-parameter declaration: typed, immutable, unknown names rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DistillLoss(nn.Module, ABC):
    """A distillation term. Concrete losses set ``Params`` (and ``needs``) and implement ``compute``/``pair_loss``.

    A loss narrows the type of ``hp`` to its ``Params`` class (``hp: _KDParams``) so its fields type-check.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()
    Params: ClassVar[type[Hparams]] = Hparams
    hp: Hparams

    def __init__(self, **hparams: Any) -> None:
        super().__init__()
        self.hp = _validate(type(self), hparams)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.hp.model_dump().items())


class LogitLoss(DistillLoss):
    """Called as ``loss(student_logits, teacher_logits, target)``; the teacher side is detached."""

    kind: ClassVar[str] = "logit"

    def forward(self, student_logits: Tensor, teacher_logits: Tensor, target: Tensor) -> Tensor:
        if student_logits.dim() != 2 or student_logits.shape != teacher_logits.shape:
            raise ValueError(
                f"loss {self.name!r}: student and teacher logits must both be (N, C); got "
                f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
            )
        if target.shape != student_logits.shape[:1]:
            raise ValueError(f"loss {self.name!r}: target must be (N,); got {tuple(target.shape)}")
        return self.compute(student_logits, teacher_logits.detach(), target)

    @abstractmethod
    def compute(self, student: Tensor, teacher: Tensor, target: Tensor) -> Tensor:
        """The loss value; ``teacher`` is already detached."""


class FeatureLoss(DistillLoss):
    """Called as ``loss(student_features, teacher_features, **extras)``: lists, one tensor per tapped layer pair.

    The default is the sum over pairs of :meth:`pair_loss`. Teacher features are detached. Learnable parts
    (connectors, projectors) are made by :meth:`adapter` on the first call, from the shapes seen then.
    """

    kind: ClassVar[str] = "feature"
    max_pairs: ClassVar[int | None] = None

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        self.adapters = nn.ModuleList()

    def forward(self, student_features: Sequence[Tensor], teacher_features: Sequence[Tensor], **extras: Any) -> Tensor:
        if not student_features or len(student_features) != len(teacher_features):
            raise ValueError(
                f"loss {self.name!r}: needs as many student as teacher features (at least one); got "
                f"{len(student_features)} and {len(teacher_features)}"
            )
        if self.max_pairs is not None and len(student_features) > self.max_pairs:
            raise UserError(
                f"loss {self.name!r} takes {self.max_pairs} tapped layer pair(s); got {len(student_features)}"
            )
        if set(extras) != self.needs:
            raise TypeError(
                f"loss {self.name!r} needs extra arguments {sorted(self.needs)}; got {sorted(extras)} (see EXTRAS)"
            )
        pairs = enumerate(zip(student_features, teacher_features))
        return torch.stack([self.pair_loss(i, s, t.detach(), **extras) for i, (s, t) in pairs]).sum()

    @abstractmethod
    def pair_loss(self, index: int, student: Tensor, teacher: Tensor, **extras: Any) -> Tensor:
        """The loss of tapped pair ``index``; ``teacher`` is already detached."""

    def adapter(self, index: int, build: Callable[[], nn.Module], like: Tensor) -> nn.Module:
        """The learnable adapter of pair ``index``, built by ``build()`` on first use (on ``like``'s device/dtype)."""
        if index < len(self.adapters):
            return self.adapters[index]
        if index != len(self.adapters):
            raise RuntimeError(f"loss {self.name!r}: adapters must be created in pair order")
        module = build().to(device=like.device, dtype=like.dtype)
        self.adapters.append(module)
        return module


class _WarmupParams(Protocol):
    @property
    def warmup_epochs(self) -> int: ...


class EpochWarmup:
    """Mixin: linear warm-up of the loss weight over ``warmup_epochs`` (mdistiller's DKD schedule).

    ``set_epoch(epoch)`` takes the 0-based index of the epoch about to run (as the trainer and PyTorch's
    ``DistributedSampler.set_epoch`` count); the factor is ``min((epoch + 1) / warmup_epochs, 1)``, which equals
    mdistiller's ``min(epoch / warmup, 1)`` with its 1-based epochs. ``warmup_epochs = 0`` disables the warm-up.
    """

    hp: _WarmupParams
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        """Tell the loss which epoch (0-based) is about to run."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    @property
    def warmup_factor(self) -> float:
        warmup = self.hp.warmup_epochs
        return 1.0 if warmup == 0 else min((self.epoch + 1) / warmup, 1.0)


def register(name: str, *, paper: str) -> Callable[[L], L]:
    """Class decorator: add a loss to :data:`LOSSES` with its kind, paper, defaults and one-line description."""

    def decorator(cls: L) -> L:
        cls.name = name
        doc = (cls.__doc__ or "").strip().splitlines()
        LOSSES.add(
            name, cls, kind=cls.kind, paper=paper, description=doc[0] if doc else "", defaults=_defaults(cls.Params)
        )
        return cls

    return decorator


def create(name: str, **hparams: Any) -> DistillLoss:
    """The loss registered as ``name`` with hyper-parameters ``hparams`` (UserError on unknown names or values)."""
    return LOSSES.get(name)(**hparams)


def loss_info(name: str) -> dict[str, Any]:
    """What ``edgekd zoo`` shows for one loss: kind, paper, description, typed hyper-parameters, extra inputs."""
    entry = LOSSES.entry(name)
    params = entry.obj.Params
    return {
        "name": name,
        "kind": entry.meta["kind"],
        "paper": entry.meta["paper"],
        "description": entry.meta["description"],
        "hparams": [
            {
                "name": key,
                "type": getattr(field.annotation, "__name__", str(field.annotation)),
                "default": field.default,
                "description": field.description or "",
            }
            for key, field in params.model_fields.items()
        ],
        "needs": sorted(entry.obj.needs),
    }


def _defaults(params: type[Hparams]) -> dict[str, Any]:
    return {key: field.default for key, field in params.model_fields.items()}


def _validate(cls: type[DistillLoss], hparams: dict[str, Any]) -> Hparams:
    """``cls.Params(**hparams)``, turning the first validation error into a one-line UserError."""
    try:
        return cls.Params(**hparams)
    except ValidationError as error:
        accepted = sorted(cls.Params.model_fields)
        listing = f"accepted: {', '.join(accepted)}" if accepted else "it takes no hparams"
        first = error.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UserError(f"loss {cls.name!r}: unknown hparam {key!r}; {hint}{listing}") from None
        raise UserError(
            f"loss {cls.name!r}: hparam {key!r}: {first['msg']} (got {first.get('input')!r}); {listing}"
        ) from None
