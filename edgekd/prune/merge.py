"""Exact merge math of LayerMerge (Kim et al., "LayerMerge: Neural Network Depth Compression through Layer Pruning
and Merging", ICML 2024, section 3): BN folding, composition of consecutive convolutions, absorbed identity skips.

Every affine convolution is held as an :class:`AffineConv` ``y = W ⋆ pad(x, p) + b`` (cross-correlation, stride
``s``, ``groups``). The rules, all exact in real arithmetic (computed in float64, stored in float32):

- BN folding: ``W ← W·γ/√(σ²+ε)``, ``b ← (b−μ)·γ/√(σ²+ε) + β``.
- Composition ``second ∘ first`` (no activation between, the padding of both moved to the first): kernel
  ``k = k₁ + s₁(k₂ − 1)`` (``Σk − n + 1`` along a stride-1 chain), stride ``s₁·s₂``, padding ``p₁ + s₁·p₂``;
  weight ``W[o,i] = Σ_c W₂[o,c] * W₁[c,i]`` (the earlier kernel convolved with the flipped later kernel, padding
  ``k₂ − 1``); bias ``b = W₂·b₁ + b₂`` (``W₂`` summed over space). Only a 1×1, unpadded conv may follow a strided
  one, so the kernel never dilates.
- Grouped kernels are expanded to dense block-diagonal ones when mixed with a dense conv; two depthwise convs stay
  depthwise.
- An identity skip ``x + f(x)`` is absorbed by adding 1 at kernel index ``p`` (the centre for "same" padding) on the
  diagonal.

"Padding moved" means the pruned-but-unmerged network pads once, at the first conv of a segment, by the total
padding, and its later convs do not pad: that network and the merged one compute exactly the same function.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True, eq=False)
class AffineConv:
    """``y = conv2d(x, weight, bias, stride, padding, groups)`` with square kernels, float64 tensors."""

    weight: torch.Tensor
    bias: torch.Tensor
    stride: int
    padding: int
    groups: int

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1] * self.groups

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def kernel(self) -> int:
        return self.weight.shape[-1]

    @property
    def depthwise(self) -> bool:
        """One input channel per output channel, as many groups as channels."""
        return self.groups == self.in_channels == self.out_channels

    def dense(self) -> AffineConv:
        """The same map with ``groups = 1`` (a block-diagonal dense kernel)."""
        if self.groups == 1:
            return self
        out_g, in_g = self.out_channels // self.groups, self.weight.shape[1]
        weight = self.weight.new_zeros(self.out_channels, self.in_channels, self.kernel, self.kernel)
        for g in range(self.groups):
            weight[g * out_g:(g + 1) * out_g, g * in_g:(g + 1) * in_g] = self.weight[g * out_g:(g + 1) * out_g]
        return AffineConv(weight, self.bias, self.stride, self.padding, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype), self.stride, self.padding, 1, self.groups)

    def to_module(self) -> nn.Conv2d:
        """An ``nn.Conv2d`` (float32, with bias) computing this map."""
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel, self.stride, self.padding,
                         groups=self.groups, bias=True)
        with torch.no_grad():
            conv.weight.copy_(self.weight.to(conv.weight.dtype))
            bias = conv.get_parameter("bias")  # built with bias=True
            bias.copy_(self.bias.to(bias.dtype))
        return conv


def _square(value: int | tuple[int, ...], what: str) -> int:
    values = (value,) if isinstance(value, int) else tuple(value)
    if len(set(values)) != 1:
        raise ValueError(f"{what} must be square, got {value}")
    return int(values[0])


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d | None = None) -> AffineConv:
    """``conv`` followed by ``bn`` (its running statistics, i.e. eval mode) as one :class:`AffineConv`.

    ``W ← W·γ/√(σ²+ε)`` and ``b ← (b−μ)·γ/√(σ²+ε) + β`` (LayerMerge §3, standard BN folding).
    """
    if conv.padding_mode != "zeros" or _square(conv.dilation, "dilation") != 1:
        raise ValueError("only zero-padded, undilated convolutions can be merged")
    if isinstance(conv.padding, str):
        raise ValueError(f"only convolutions with numeric padding can be folded, got padding={conv.padding!r}")
    weight = conv.weight.detach().double()
    bias = conv.bias.detach().double() if conv.bias is not None else weight.new_zeros(weight.shape[0])
    if bn is not None:
        if bn.running_mean is None or bn.running_var is None:
            raise ValueError("a BatchNorm without running statistics cannot be folded")
        scale = (bn.weight.detach().double() if bn.weight is not None else 1.0) / torch.sqrt(
            bn.running_var.detach().double() + bn.eps)
        shift = bn.bias.detach().double() if bn.bias is not None else 0.0
        weight = weight * scale.reshape(-1, 1, 1, 1)
        bias = (bias - bn.running_mean.detach().double()) * scale + shift
    return AffineConv(weight, bias, _square(conv.stride, "stride"), _square(conv.padding, "padding"), conv.groups)


def identity_conv(channels: int) -> AffineConv:
    """The identity map on ``channels`` channels as a depthwise 1×1 conv (what a pruned conv becomes)."""
    weight = torch.ones(channels, 1, 1, 1, dtype=torch.float64)
    return AffineConv(weight, torch.zeros(channels, dtype=torch.float64), 1, 0, channels)


def compose(first: AffineConv, second: AffineConv) -> AffineConv:
    """``second ∘ first`` as one conv, the padding of ``second`` moved in front of ``first`` (module docstring)."""
    if first.out_channels != second.in_channels:
        raise ValueError(f"cannot compose a conv with {first.out_channels} outputs and one with "
                         f"{second.in_channels} inputs")
    if first.stride > 1 and (second.kernel != 1 or second.padding != 0):
        raise ValueError("only an unpadded 1x1 convolution may follow a strided one in a merged segment")
    stride, padding = first.stride * second.stride, first.padding + first.stride * second.padding
    flipped = second.weight.flip(-1, -2)
    pad = second.kernel - 1
    if first.depthwise and second.depthwise:
        channels = first.out_channels
        image = F.pad(first.weight.reshape(1, channels, first.kernel, first.kernel), [pad] * 4)
        size = first.kernel + pad
        weight = F.conv2d(image, flipped, groups=channels).reshape(channels, 1, size, size)
        bias = second.weight.sum(dim=(1, 2, 3)) * first.bias + second.bias
        return AffineConv(weight, bias, stride, padding, channels)
    a, b = first.dense(), second.dense()
    images = F.pad(a.weight.transpose(0, 1), [pad] * 4)  # (in, mid, k1, k1): one "image" per input channel
    weight = F.conv2d(images, b.weight.flip(-1, -2)).transpose(0, 1).contiguous()
    bias = b.weight.sum(dim=(2, 3)) @ a.bias + b.bias
    return AffineConv(weight, bias, stride, padding, 1)


def add_identity(conv: AffineConv) -> AffineConv:
    """``x + conv(x)``: 1 added at kernel index ``padding`` on the channel diagonal (an absorbed identity skip)."""
    k, p = conv.kernel, conv.padding
    if conv.in_channels != conv.out_channels or conv.stride != 1 or k != 2 * p + 1:
        raise ValueError("an identity skip can only be absorbed by a shape-preserving conv (same channels, "
                         "stride 1, kernel 2*padding+1)")
    weight = conv.weight.clone()
    if conv.groups == 1:
        index = torch.arange(conv.out_channels)
        weight[index, index, p, p] += 1.0
    elif conv.depthwise:
        weight[:, 0, p, p] += 1.0
    else:
        return add_identity(conv.dense())
    return AffineConv(weight, conv.bias.clone(), 1, p, conv.groups)


def merge_chain(convs: Sequence[AffineConv]) -> AffineConv:
    """The single conv equal to ``convs[-1] ∘ … ∘ convs[0]`` (padding moved to the first)."""
    if not convs:
        raise ValueError("merge_chain needs at least one convolution")
    merged = convs[0]
    for conv in convs[1:]:
        merged = compose(merged, conv)
    return merged
