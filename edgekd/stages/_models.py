"""Helpers the training stages share: build a recipe's model for the data, save and load torch artifacts."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.config import ModelRef
from edgekd.data import DataBundle
from edgekd.errors import UserError
from edgekd.models import (
    MODELS,
    count_parameters,
    create,
    layout_kwargs,
    load_checkpoint,
    load_weights,
    model_from_checkpoint,
)
from edgekd.runtime import save_torch_artifact
from edgekd.pipeline.artifacts import Artifact, input_spec
from edgekd.pipeline.context import StageContext


def model_spec(ref: ModelRef, data: DataBundle) -> dict[str, Any]:
    """The factory call that builds ``ref`` for ``data``: zoo models get the data's channels and classes, and the
    small-input or ImageNet layout that fits its image size (:func:`~edgekd.models.layout_kwargs`) unless the
    recipe sets ``small_input`` in ``kwargs``; the choice is recorded in the spec."""
    kwargs = dict(ref.kwargs)
    shape_args = {"num_classes": data.num_classes, "in_channels": data.in_channels}
    if ref.name in MODELS:
        accepted = inspect.signature(MODELS.get(ref.name)).parameters
        shape_args.update(layout_kwargs(ref.name, data.image_size))
        kwargs = {**{k: v for k, v in shape_args.items() if k in accepted}, **kwargs}
    return {"name": ref.name, "kwargs": kwargs}


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


def write_torch_artifact(
    ctx: StageContext, net: nn.Module, spec: dict[str, Any], *, name: str, role: str, info: dict[str, Any]
) -> Artifact:
    """Write ``net`` as a torch artifact (safe checkpoint with its normalisation) and describe it."""
    data = ctx.data()
    path = save_torch_artifact(net, spec, data.mean, data.std, ctx.stage_dir / f"{name}.pt")
    return Artifact.from_file(
        ctx.run_dir, path, name=name, format="torch", precision="fp32", runtime="torch", role=role,
        input=input_spec(tuple(data.test.x.shape)),
        info={"parameters": count_parameters(net), "model": spec, **info},
    )


def load_plain_net(ctx: StageContext, artifact: Artifact) -> nn.Module:
    """The plain net (fed normalised input) stored in a torch artifact."""
    return model_from_checkpoint(load_checkpoint(Path(ctx.path(artifact))))


def deployed_model(ctx: StageContext, stage: str) -> Artifact:
    """The torch model later stages deploy: the student, or the teacher when the recipe has no student."""
    source = ctx.artifact("student") or ctx.artifact("teacher")
    if source is None:
        raise UserError(f"{stage}: needs a teacher or a student section in the recipe")
    return source
