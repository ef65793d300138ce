"""Logits from any classifier's output, and the one-batch check that a model fits the data.

Models as users have them return more than a tensor: a tuple (``(logits, features)``), a dict, or an output object
such as Hugging Face ``transformers``' ``ImageClassifierOutput``. edgekd takes the logits by one rule:

    **a tensor, else ``.logits`` (an attribute, or a dict key), else the first element (of a tuple or list).**

:func:`create` applies the rule to every user model with :func:`return_logits`, a forward hook on the model that
replaces its output by the logits. The model itself is untouched (module paths for feature taps and state-dict keys
stay as they are), and everything that calls it sees a tensor: training, distillation, teacher caching, and the ONNX
(TorchScript) and OpenVINO exporters, which trace through module calls and so write a graph whose one output is the
logits. A model rebuilt from an edgekd checkpoint goes through :func:`create` again and gets the same hook.
(``torch.fx.symbolic_trace`` calls the root's ``forward`` directly and does not run its hooks.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from edgekd.errors import UserError, first_line

CHECK_BATCH = 2
"""Batch size of the one forward pass :func:`check_model` runs."""


def logits_of(output: Any) -> Tensor:
    """The logits in a model's ``output``: a tensor, else ``.logits`` (attribute or dict key), else the first element.

    Raises:
        TypeError: no tensor found by the rule (the message names the output's type).
    """
    if isinstance(output, Tensor):
        return output
    found = getattr(output, "logits", None)
    if found is None and isinstance(output, Mapping):
        found = output.get("logits")
    if found is None and isinstance(output, Sequence) and not isinstance(output, str) and len(output):
        found = output[0]
    if isinstance(found, Tensor):
        return found
    raise TypeError(f"the model returns {_describe(output)}; edgekd takes a tensor, else .logits (attribute or dict "
                    f"key), else the first element of a tuple or list, and found no tensor there")


def return_logits(net: nn.Module) -> nn.Module:
    """Make ``net`` return :func:`logits_of` its output (a forward hook; idempotent), and return ``net``."""
    if _logits_hook not in net._forward_hooks.values():
        net.register_forward_hook(_logits_hook)
    return net


def check_model(net: nn.Module, input_shape: Sequence[int], num_classes: int, label: str) -> None:
    """Run one batch of :data:`CHECK_BATCH` zeros of ``input_shape`` (C, H, W) through ``net`` in eval mode.

    The net's train/eval mode and the global RNG are left as they were; the batch is on the net's device.

    Args:
        net: the plain network (fed normalised input).
        input_shape: the data's sample shape, (C, H, W).
        num_classes: the data's number of classes.
        label: how the message names the model, e.g. ``"teacher 'pkg.nets:build'"``.

    Raises:
        UserError: the forward raises (its exception's first line is given), or the output is not
            (N, ``num_classes``) logits (both shapes are given).
    """
    shape = (CHECK_BATCH, *(int(d) for d in input_shape))
    param = next(net.parameters(), None)
    x = torch.zeros(shape, device=param.device if param is not None else "cpu")
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            output = net(x)
    except Exception as exc:  # any failure of user code on a well-formed batch is the model's to fix
        raise UserError(f"{label}: forward of an input batch {shape} fails: {type(exc).__name__}: "
                        f"{first_line(exc)}") from exc
    finally:
        net.train(was_training)
    expected = (CHECK_BATCH, num_classes)
    if not isinstance(output, Tensor):
        raise UserError(f"{label}: returns {_describe(output)} for an input batch {shape}, expected logits of shape "
                        f"{expected}")
    if tuple(output.shape) != expected:
        raise UserError(f"{label}: outputs shape {tuple(output.shape)} for an input batch {shape}, expected "
                        f"{expected} (N, classes) for the data's {num_classes} classes; build it with "
                        f"{num_classes} outputs (a factory parameter num_classes, or the model's kwargs)")


def _logits_hook(module: nn.Module, args: Any, output: Any) -> Tensor | None:
    """Forward hook of :func:`return_logits`: ``None`` (output kept) for a tensor, else the logits replace it."""
    return None if isinstance(output, Tensor) else logits_of(output)


def _describe(output: Any) -> str:
    """``tuple of 2``, ``dict with keys ['a', 'b']``, or the type's name."""
    name = type(output).__name__
    if isinstance(output, Mapping):
        return f"{name} with keys {list(output)[:5]}"
    if isinstance(output, Sequence) and not isinstance(output, str):
        return f"{name} of {len(output)}"
    return name
