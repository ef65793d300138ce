"""The model registry and its factory, the only way to build a model (timm's ``create_model`` pattern).

Zoo families register their factories with ``@MODELS.register(family=..., paper=..., default_taps=[...],
description=...)``; :func:`create` builds a zoo model by name, or a user model given as ``"package.module:factory"``.
A user model may return a tuple, a dict or an output object with ``.logits``: :func:`create` makes it return the
logits (the rule of :mod:`edgekd.models.outputs`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from edgekd._imports import quiet_import
from edgekd._registry import Registry
from edgekd.errors import UserError
from edgekd.models.outputs import return_logits

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")

_META_KEYS = ("family", "paper", "default_taps", "description")

SMALL_INPUT_BELOW = 64
"""Images smaller than this (pixels, shorter side) get the small-input (CIFAR-style) layout of a zoo model that has
one (``small_input``); from this size up the ImageNet-style layout, which downsamples 4× in the stem."""


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build the model ``name`` with keyword arguments ``kwargs``.

    Args:
        name: a zoo name (see ``MODELS.names()``), or a user model ``"package.module:factory"`` whose factory is
            imported with importlib and called with ``kwargs``.
        **kwargs: arguments of the factory, e.g. ``num_classes=10, in_channels=1``.

    Returns:
        The freshly initialised model (in training mode); a user model returns its logits
        (:func:`~edgekd.models.outputs.return_logits`).

    Raises:
        UserError: unknown zoo name (with the closest names), a user path that cannot be imported or does not give an
            ``nn.Module``, or arguments the factory does not accept (with the accepted ones).
    """
    factory = factory_of(name)
    _check_arguments(name, factory, kwargs)
    try:
        model = factory(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UserError(f"model {name!r}: {exc}; {_accepted(factory)}") from exc
    if not isinstance(model, nn.Module):
        raise UserError(f"model {name!r}: the factory returned {type(model).__name__}, expected a torch.nn.Module")
    return return_logits(model) if is_user_model(name) else model


def is_user_model(name: str) -> bool:
    """Whether ``name`` is a user model ``"package.module:factory"`` (not a zoo name)."""
    return ":" in name


def factory_of(name: str) -> Callable[..., Any]:
    """The factory :func:`create` calls for ``name``: the zoo entry, or the user's factory imported by path.

    Raises:
        UserError: as :func:`create` for an unknown name or a user path that cannot be imported.
    """
    return _user_factory(name) if is_user_model(name) else MODELS.get(name)


def model_info(name: str) -> dict[str, Any]:
    """What ``edgekd zoo`` shows for a zoo model: name, family, paper, default taps, description, parameters.

    ``parameters`` maps each factory argument to its default value.
    """
    entry = MODELS.entry(name)
    info: dict[str, Any] = {"name": entry.name}
    info.update({key: entry.meta[key] for key in _META_KEYS})
    info["parameters"] = {
        param.name: param.default for param in inspect.signature(entry.obj).parameters.values()
    }
    return info


def layout_kwargs(name: str, image_size: tuple[int, int]) -> dict[str, bool]:
    """``{"small_input": ...}`` chosen from the data's image size for a zoo model with that switch, else ``{}``.

    At 224 px the small-input layout keeps every activation 16× larger than the ImageNet network does (stride 1
    instead of 4 before the first stage), far beyond what the model needs and what the machine holds.
    """
    if name not in MODELS or "small_input" not in inspect.signature(MODELS.get(name)).parameters:
        return {}
    return {"small_input": min(image_size) < SMALL_INPUT_BELOW}


def count_parameters(model: nn.Module) -> int:
    """Number of parameter elements (shared parameters counted once)."""
    return sum(param.numel() for param in model.parameters())


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of parameters and buffers with floating tensors stored as fp32 (others at their own element size)."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * (4 if t.is_floating_point() else t.element_size()) for t in tensors)


def _user_factory(path: str) -> Callable[..., Any]:
    """Import ``"package.module:factory"`` and return the factory."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr or ":" in attr:
        raise UserError(f"model {path!r}: a user model is written 'package.module:factory'")
    try:
        module = quiet_import(module_name)  # its libraries' import-time warnings and logs stay off the terminal
    except Exception as exc:  # any failure inside user code is the user's to fix; the cause stays chained
        raise UserError(f"model {path!r}: cannot import {module_name!r} ({type(exc).__name__}: {exc})") from exc
    factory = getattr(module, attr, None)
    if factory is None:
        raise UserError(f"model {path!r}: module {module_name!r} has no attribute {attr!r}")
    if not callable(factory):
        raise UserError(f"model {path!r}: {attr!r} is a {type(factory).__name__}, expected a callable factory")
    return factory


def _check_arguments(name: str, factory: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """Raise UserError when ``kwargs`` do not bind to the factory's signature."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins and C extensions may have no signature: let the call decide
        return
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        raise UserError(f"model {name!r}: {exc}; {_accepted(factory)}") from None


def _accepted(factory: Callable[..., Any]) -> str:
    """``accepted parameters: a=1, b=2`` from the factory's signature."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return "accepted parameters unknown"
    shown = [p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}" for p in params]
    return f"accepted parameters: {', '.join(shown) or 'none'}"
