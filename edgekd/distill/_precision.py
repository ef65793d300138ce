"""Numerics of the trainer: mixed precision and the channels-last memory format.

Mixed precision: autocast in bfloat16 on CPU, float16 on CUDA. float16 has a narrow exponent range, so on CUDA small
gradients are kept representable by scaling the loss (``torch.amp.GradScaler``, Micikevicius et al., "Mixed
Precision Training", ICLR 2018); bfloat16 has float32's range and needs no scaling. Weights, optimiser state and
gradients stay float32 in both cases.

Channels-last on CPU is refused for nets with a 1×1, stride > 1 convolution whose input has fewer channels than
oneDNN's channel block (8 with AVX2, 16 with AVX-512): its NHWC weight-gradient kernel writes past its workspace
(uxlfoundation/oneDNN#6035; with torch 2.13 we saw heap corruption and crashes, the issue also reports silently
wrong gradients). ResNet downsample shortcuts of narrow nets are such convolutions.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor, nn

from edgekd.errors import UserError


class Precision:
    """Autocast and (on CUDA) a gradient scaler, or plain float32 when ``amp`` is off."""

    def __init__(self, device: torch.device, amp: bool) -> None:
        if amp and not torch.amp.is_autocast_available(device.type):
            raise UserError(f"train.amp: mixed precision is not available on device type {device.type!r}; "
                            "set amp: false")
        self.device_type = device.type
        self.enabled = amp
        self.dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        self.scaler = torch.amp.GradScaler(device.type) if amp and device.type == "cuda" else None

    def describe(self) -> str:
        """``"fp32"``, ``"bf16-autocast"`` or ``"fp16-autocast"`` (enters the teacher-cache key)."""
        if not self.enabled:
            return "fp32"
        return "fp16-autocast" if self.dtype == torch.float16 else "bf16-autocast"

    def autocast(self) -> AbstractContextManager[Any]:
        """The autocast region of forward passes and losses (disabled when ``amp`` is off)."""
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)

    def backward(self, loss: Tensor) -> None:
        """Back-propagate ``loss`` (scaled when a scaler is in use)."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring the gradients back to their true scale before clipping."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Optimiser step (skipped by the scaler when gradients overflowed), then the scaler's update."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        """The scaler's state, for checkpoints (empty without a scaler)."""
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the scaler's state from a checkpoint."""
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def check_channels_last(net: nn.Module, device: torch.device) -> None:
    """UserError when training ``net`` channels-last on ``device`` hits oneDNN#6035 (see the module docstring)."""
    if device.type != "cpu":
        return
    block = 16 if "AVX512" in torch.backends.cpu.get_cpu_capability() else 8
    for name, module in net.named_modules():
        if (isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and max(module.stride) > 1
                and module.in_channels // module.groups < block):
            raise UserError(
                f"train.channels_last: layer {name!r} is a 1x1 stride-{max(module.stride)} convolution with "
                f"{module.in_channels // module.groups} input channels (< {block}), whose channels-last backward is "
                "broken on this CPU (oneDNN issue #6035); set channels_last: false"
            )
