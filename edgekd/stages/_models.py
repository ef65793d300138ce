"""Helpers the training stages share: build a recipe's model for the data, save and load torch artifacts."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.config import ModelRef
from edgekd.data import DataBundle
from edgekd.errors import UserError
from edgekd.models import (
    check_model,
    count_macs,
    count_parameters,
    create,
    factory_of,
    layout_kwargs,
    load_checkpoint,
    load_weights,
    model_from_checkpoint,
)
from edgekd.pipeline.artifacts import Artifact, input_spec
from edgekd.pipeline.context import StageContext
from edgekd.runtime import save_torch_artifact


def model_spec(ref: ModelRef, data: DataBundle) -> dict[str, Any]:
    """The factory call that builds ``ref`` for ``data``.

    A factory, zoo or user, whose signature names a ``num_classes`` or ``in_channels`` parameter gets the data's
    (not through ``**kwargs``); a zoo model with a ``small_input`` switch gets the small-input or ImageNet layout that
    fits the data's image size (:func:`~edgekd.models.layout_kwargs`). The recipe's ``kwargs`` win; the choice is
    recorded in the spec.
    """
    shape_args = {"num_classes": data.num_classes, "in_channels": data.in_channels,
                  **layout_kwargs(ref.name, data.image_size)}
    accepted = _named_parameters(factory_of(ref.name))
    return {"name": ref.name, "kwargs": {**{k: v for k, v in shape_args.items() if k in accepted}, **ref.kwargs}}


def _named_parameters(factory: Any) -> set[str]:
    """The parameters of ``factory`` that a keyword argument binds to by name (none if it has no signature)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return set()
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in params if p.kind in named}


def layout_name(spec: dict[str, Any]) -> str:
    """``small-input layout`` / ``ImageNet layout`` for a spec with a ``small_input`` switch, else ``own layout``."""
    choice = spec["kwargs"].get("small_input")
    return "own layout" if choice is None else "small-input layout" if choice else "ImageNet layout"


def build_net(ref: ModelRef, data: DataBundle, *, seed: int | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Create the model of ``ref`` (loading ``ref.checkpoint`` if set) and return it with its spec.

    ``seed`` seeds the random initial weights (without touching the caller's global RNG state); every rank of a
    multi-process run then builds the same net.
    """
    spec = model_spec(ref, data)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        net = create(spec["name"], **spec["kwargs"])
    if ref.checkpoint is not None:
        load_weights(net, ref.checkpoint)
    return net, spec


def check_net(net: nn.Module, data: DataBundle, label: str) -> None:
    """:func:`~edgekd.models.check_model` of ``net`` on ``data``'s sample shape and classes (UserError if unfit)."""
    check_model(net, tuple(data.test.x.shape[1:]), data.num_classes, label)


def check_refs(refs: Sequence[tuple[str, ModelRef]], data: DataBundle) -> None:
    """Build every ``(role, model)`` of ``refs`` (weights loaded) and check it on one batch, before any training."""
    for role, ref in refs:
        check_net(build_net(ref, data)[0], data, f"{role} model {ref.name!r}")


def write_torch_artifact(
    ctx: StageContext, net: nn.Module, spec: dict[str, Any], *, name: str, role: str, info: dict[str, Any]
) -> Artifact:
    """Write ``net`` as a torch artifact (safe checkpoint with its normalisation) and describe it."""
    data = ctx.data()
    path = save_torch_artifact(net, spec, data.mean, data.std, ctx.stage_dir / f"{name}.pt")
    return Artifact.from_file(
        ctx.run_dir, path, name=name, format="torch", precision="fp32", runtime="torch", role=role,
        input=input_spec(tuple(data.test.x.shape)),
        info={"parameters": count_parameters(net), "macs": count_macs(net, tuple(data.test.x.shape[1:])), "model": spec,
              **info},
    )


def derived_info(source: Artifact, **extra: Any) -> dict[str, Any]:
    """The ``info`` of an artifact built from the torch model ``source``: its name, parameters and MACs (the same
    network in another format), and ``extra``."""
    return {"source": source.name, "parameters": source.info["parameters"], "macs": source.info.get("macs"), **extra}


def load_plain_net(ctx: StageContext, artifact: Artifact) -> nn.Module:
    """The plain net (fed normalised input) stored in a torch artifact."""
    return model_from_checkpoint(load_checkpoint(Path(ctx.path(artifact))))


def deployed_model(ctx: StageContext, stage: str) -> Artifact:
    """The torch model later stages deploy: the student, or the teacher when the recipe has no student."""
    source = ctx.artifact("student") or ctx.artifact("teacher")
    if source is None:
        raise UserError(f"{stage}: needs a teacher or a student section in the recipe")
    return source
