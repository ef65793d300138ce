"""An ensemble of classifiers whose output is the mean of its members' logits: a stronger teacher to distil from.

Not a zoo entry: its checkpoint spec names this module's factory by path, ``{"name": "edgekd.models.ensemble:ensemble",
"kwargs": {"members": [spec, ...]}}``, with one ``{"name", "kwargs"}`` spec per member, so
:func:`~edgekd.models.checkpoint.model_from_checkpoint` rebuilds it like any model::

    teacher = Ensemble([create("resnet20", num_classes=10, in_channels=1) for _ in range(3)])
    save_checkpoint("teacher.pt", teacher, spec=ensemble_spec([resnet20_spec] * 3))

Its state dict holds every member's weights (``members.<i>.<name>``), so a digest of it, such as the teacher-output
cache key, changes when any member does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from edgekd.models.factory import create

#: the ``name`` of an ensemble's checkpoint spec (a factory path that :func:`edgekd.models.create` imports)
ENSEMBLE = "edgekd.models.ensemble:ensemble"


class Ensemble(nn.Module):
    """``forward(x) = (1/M) * sum_m member_m(x)``: the mean of the members' logits."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([member(x) for member in self.members]).mean(dim=0)


def ensemble(members: Sequence[Mapping[str, Any]]) -> Ensemble:
    """The factory of :data:`ENSEMBLE`: an ensemble of freshly built members, one per ``{"name", "kwargs"}`` spec."""
    return Ensemble([create(str(spec["name"]), **dict(spec["kwargs"])) for spec in members])


def ensemble_spec(members: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The checkpoint spec of an ensemble of members with the given specs."""
    specs = [{"name": spec["name"], "kwargs": dict(spec["kwargs"])} for spec in members]
    return {"name": ENSEMBLE, "kwargs": {"members": specs}}
