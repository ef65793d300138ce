"""Numerics of the trainer: mixed precision and the channels-last memory format.

Mixed precision: autocast in bfloat16 on CPU, float16 on CUDA. float16 has a narrow exponent range, so on CUDA small
gradients are kept representable by scaling the loss (``torch.amp.GradScaler``, Micikevicius et al., "Mixed
Precision Training", ICLR 2018); bfloat16 has float32's range and needs no scaling. Weights, optimiser state and
gradients stay float32 in both cases.

Automatic choice (``amp: null``, ``channels_last: null``, the defaults): both on where the CPU computes bf16 natively
(AVX-512 BF16 or AMX), off elsewhere and on other devices; what was chosen, and why, is recorded in the manifest
(:meth:`Numerics.record`); ``benchmarks/train_speed.py`` measures what each choice costs on a machine.

Channels-last on CPU and oneDNN#6035: the NHWC weight-gradient kernel of a 1×1, stride > 1 convolution whose input
has fewer channels than oneDNN's channel block (8 with AVX2, 16 with AVX-512) writes past its workspace (heap
corruption and crashes with torch 2.13; the oneDNN report also shows silently wrong gradients). ResNet downsample
shortcuts of narrow nets are such convolutions. Rather than refusing the whole net, those layers alone are kept in
the contiguous (NCHW) format (:func:`keep_contiguous`: their weights, and their inputs through a forward pre-hook),
so oneDNN runs them with its NCHW kernels; the rest of the net stays channels-last. "NCHW" means the standard
strides, not merely ``is_contiguous()``: a 1×1 weight (or a one-channel input) converted to channels-last is still
``is_contiguous()``, so ``.contiguous()`` returns it unchanged, its strides keep saying channels-last, and PyTorch
picks the channels-last kernel again (:func:`standard_strides`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from edgekd.errors import UserError
from edgekd.runtime.precision import torch_bf16_supported


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


@dataclass(frozen=True)
class Numerics:
    """The resolved numerics of one training: mixed precision on or off, memory format, and why."""

    amp: bool
    channels_last: bool
    reason: str

    def record(self, precision: Precision, contiguous_layers: list[str]) -> dict[str, Any]:
        """What the manifest records: precision, memory format, layers kept NCHW (oneDNN#6035), and why."""
        return {"precision": precision.describe(), "channels_last": self.channels_last,
                "contiguous_layers": contiguous_layers, "reason": self.reason}


def resolve_numerics(amp: bool | None, channels_last: bool | None, device: torch.device) -> Numerics:
    """``amp``/``channels_last`` as the recipe gives them, ``None`` resolved automatically (see the module
    docstring)."""
    native = device.type == "cpu" and torch_bf16_supported()
    if native:
        why = "this CPU computes bf16 natively (AVX-512 BF16 or AMX)"
    elif device.type == "cpu":
        why = "this CPU has no native bf16 (needs AVX-512 BF16 or AMX)"
    else:
        why = f"automatic choice is made for CPUs only, not {device.type}"
    auto = [name for name, value in (("amp", amp), ("channels_last", channels_last)) if value is None]
    reason = f"{' and '.join(auto)} automatic: {why}" if auto else "set by the recipe"
    return Numerics(native if amp is None else amp, native if channels_last is None else channels_last, reason)


def narrow_strided_pointwise(net: nn.Module, device: torch.device) -> list[str]:
    """Names of the convolutions of ``net`` whose channels-last backward hits oneDNN#6035 on ``device``."""
    if device.type != "cpu":
        return []
    block = 16 if "AVX512" in torch.backends.cpu.get_cpu_capability() else 8
    return [name for name, module in net.named_modules()
            if isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and max(module.stride) > 1
            and module.in_channels // module.groups < block]


def keep_contiguous(net: nn.Module, names: list[str]) -> Callable[[], None]:
    """Keep the named convolutions of a channels-last ``net`` in NCHW (weights and inputs), working around
    oneDNN#6035; returns the function that removes the input hooks again (weights stay as they are)."""
    modules = dict(net.named_modules())
    handles = []
    for name in names:
        conv = modules[name]
        assert isinstance(conv, nn.Conv2d)
        conv.weight.data = standard_strides(conv.weight.data)
        handles.append(conv.register_forward_pre_hook(_contiguous_input))

    def release() -> None:
        for handle in handles:
            handle.remove()

    return release


def standard_strides(tensor: Tensor) -> Tensor:
    """``tensor`` with the row-major (NCHW) strides PyTorch derives its memory format from; a copy only if its strides
    differ (``.contiguous()`` keeps a 1×1 channels-last weight as it is, since size-1 dimensions make both layouts
    contiguous)."""
    row_major: list[int] = []
    step = 1
    for size in reversed(tensor.shape):
        row_major.insert(0, step)
        step *= max(size, 1)
    return tensor if list(tensor.stride()) == row_major else tensor.clone(memory_format=torch.contiguous_format)


def _contiguous_input(_module: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return tuple(standard_strides(arg) for arg in args)
