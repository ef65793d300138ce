"""The edgekd torch artifact: an edgekd checkpoint that also records the normalisation to put in front of the net.

It is an ordinary :mod:`edgekd.models.checkpoint` file (plain containers and tensors, read with
``weights_only=True``) with one extra key::

    {"format": "edgekd-checkpoint/1",
     "spec": {"name": "resnet8", "kwargs": {"num_classes": 10, "in_channels": 1}},
     "state_dict": {...},                       # of the plain network, fed normalised input
     "normalize": {"mean": [0.286], "std": [0.353]}}

:func:`load_torch_artifact` rebuilds the network with ``edgekd.models.create(spec["name"], **spec["kwargs"])``
(zoo names and user models ``"package.module:factory"``) and wraps it with :func:`deployable`, so it takes raw
pixels in [0, 1] like every other artifact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.errors import UserError
from edgekd.models.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with ``mean`` and ``std`` stored as (1, C, 1, 1) buffers."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or not len(mean):
            raise ValueError(f"mean {list(mean)} and std {list(std)} must be non-empty and of the same length")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {list(std)}")
        self.register_buffer("mean", torch.tensor([float(m) for m in mean]).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor([float(s) for s in std]).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Deployable(nn.Module):
    """``net(normalize(x))``: a plain network behind its :class:`Normalize`.

    An explicit ``forward`` rather than ``nn.Sequential``: NNCF's torch backend attaches a hook-storage submodule to
    the model it quantizes, which a ``Sequential`` would call as one more layer.
    """

    def __init__(self, normalize: Normalize, net: nn.Module) -> None:
        super().__init__()
        self.normalize = normalize
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


def deployable(net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> Deployable:
    """``net`` behind ``Normalize(mean, std)``, in eval mode: the network as every artifact exposes it.

    ``net`` is shared, not copied, so it is put in eval mode too.
    """
    return Deployable(Normalize(mean, std), net).eval()


def save_torch_artifact(net: nn.Module, spec: Mapping[str, Any], mean: Sequence[float], std: Sequence[float],
                        path: Path) -> Path:
    """Write ``net`` (the plain network that ``edgekd.models.create(spec["name"], **spec["kwargs"])`` builds) and
    its normalisation to ``path`` atomically; ``spec["kwargs"]`` must hold plain values only."""
    Normalize(mean, std)  # validates mean/std before anything is written
    save_checkpoint(path, net, spec=dict(spec),
                    normalize={"mean": [float(m) for m in mean], "std": [float(s) for s in std]})
    return Path(path)


def load_torch_artifact(path: Path) -> Deployable:
    """The deployable network (eval mode, CPU) stored at ``path`` by :func:`save_torch_artifact`."""
    payload = load_checkpoint(path)
    norm = payload.get("normalize")
    if not isinstance(norm, Mapping) or not {"mean", "std"} <= set(norm):
        raise UserError(f"{path}: an edgekd checkpoint without key 'normalize' ({{'mean': [...], 'std': [...]}}) is "
                        f"not a deployable torch artifact; export it with save_torch_artifact")
    return deployable(model_from_checkpoint(payload), norm["mean"], norm["std"])
