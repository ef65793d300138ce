"""Checks the stages share, run before any stage starts (``Stage.check``): a mistake in a recipe or a device profile
is one line naming its key, found by ``edgekd validate`` instead of hours into a run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from edgekd.config import LossTerm, ModelRef
from edgekd.data import DataBundle
from edgekd.errors import ConfigError, UserError
from edgekd.runtime import first_line

T = TypeVar("T")


def as_config_error(where: str, key: str, work: Callable[[], T]) -> T:
    """``work()``, with a UserError it raises turned into a :class:`ConfigError` at ``key`` of the recipe/device."""
    try:
        return work()
    except ConfigError:
        raise
    except UserError as exc:
        raise ConfigError(where, key, first_line(exc)) from None


def check_losses(terms: Sequence[LossTerm], key: str, *, logit_only: str | None = None) -> None:
    """Every loss builds with its params (names, types, ranges); with ``logit_only`` (why), feature losses are
    refused."""
    from edgekd.distill.losses import LOSSES, create

    for i, term in enumerate(terms):
        as_config_error("recipe", f"{key}.{i}.params", lambda: create(term.name, **term.params))
        kind = LOSSES.entry(term.name).meta["kind"]
        if logit_only is not None and kind != "logit":
            raise ConfigError("recipe", f"{key}.{i}.name", f"{term.name!r} is a {kind} loss; {logit_only}")


def check_model(ref: ModelRef, key: str, data: DataBundle) -> None:
    """The model builds from its name and kwargs for this data (weights loaded from its checkpoint, if any) and maps
    one batch of the data's shape to (N, classes) logits."""
    from edgekd.stages._models import check_refs

    if ref.checkpoint is not None and not ref.checkpoint.is_file():
        raise ConfigError("recipe", f"{key}.checkpoint", f"{ref.checkpoint}: file not found")
    as_config_error("recipe", key, lambda: check_refs([(key.split(".")[0], ref)], data))
