"""Model complexity: multiply-accumulates of one forward pass, counted by torch's own FLOP counter.

:class:`torch.utils.flop_counter.FlopCounterMode` counts the floating-point operations of every convolution and
matrix product of the ATen graph (``2 · MACs`` each: a convolution of weight ``(C_out, C_in/g, k, k)`` over an
``H_out × W_out`` output costs ``C_out · C_in/g · k² · H_out · W_out`` MACs, a linear layer ``in · out``).
Normalisation, activations and pooling are not counted, as in the MAC figures of the papers and of torchvision.
The model is run on the ``meta`` device, so nothing is computed and any input size costs the same.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` on the ``meta`` device (shapes, no data), without the original's forward hooks."""
    meta = copy.deepcopy(model).to("meta")
    for module in meta.modules():
        module._forward_hooks.clear()
        module._forward_pre_hooks.clear()
    return meta


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass of ``model`` on one input of shape ``input_shape`` (C, H, W)."""
    meta = meta_copy(model).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta(torch.empty((1, *input_shape), device="meta"))
    return counter.get_total_flops() // 2
