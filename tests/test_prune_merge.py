"""Exact merge math of LayerMerge: a merged conv equals the chain it replaces (padding moved to the first conv)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgekd.prune.merge import AffineConv, add_identity, compose, fold_bn, identity_conv, merge_chain


def _conv_bn(cin: int, cout: int, k: int, stride: int, padding: int, groups: int, seed: int) -> nn.Sequential:
    """A conv + eval-mode BN with random weights and random running statistics."""
    g = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=bool(seed % 2))
    bn = nn.BatchNorm2d(cout)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) / k)
        if conv.bias is not None:
            conv.bias.copy_(torch.randn(cout, generator=g))
        bn.weight.copy_(torch.rand(cout, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(cout, generator=g))
        bn.running_mean.copy_(torch.randn(cout, generator=g))
        bn.running_var.copy_(torch.rand(cout, generator=g) + 0.5)
    return nn.Sequential(conv, bn).eval()


@torch.no_grad()
def _reference(x: torch.Tensor, layers: list[nn.Sequential]) -> torch.Tensor:
    """The pruned-but-unmerged chain in float64: total padding applied once in front, no padding inside."""
    total, stride = 0, 1
    for layer in layers:
        total += stride * layer[0].padding[0]
        stride *= layer[0].stride[0]
    y = F.pad(x.double(), [total] * 4)
    for layer in layers:
        conv, bn = layer
        y = F.conv2d(y, conv.weight.double(), None if conv.bias is None else conv.bias.double(), conv.stride, 0,
                     1, conv.groups)
        y = F.batch_norm(y, bn.running_mean.double(), bn.running_var.double(), bn.weight.double(),
                         bn.bias.double(), False, 0.0, bn.eps)
    return y


def _relative_error(merged: AffineConv, x: torch.Tensor, reference: torch.Tensor) -> float:
    with torch.no_grad():
        out = merged.to_module()(x)  # float32, as the exported network computes
    assert out.shape == reference.shape
    return float((out.double() - reference).abs().max() / reference.abs().max())


KERNELS = (1, 3, 5)
CHANNELS = 6


@pytest.mark.parametrize("k1,k2", list(itertools.product(KERNELS, KERNELS)))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("groups1,groups2", [(1, 1), (CHANNELS, CHANNELS), (CHANNELS, 1), (1, CHANNELS), (2, 3)])
@pytest.mark.parametrize("same", [True, False])
def test_two_conv_merge_equals_chain(k1: int, k2: int, stride: int, groups1: int, groups2: int, same: bool) -> None:
    # only a 1x1 unpadded conv may follow a strided one: stride sits on the first conv only when k2 == 1,
    # otherwise on the second (the chain stride-1 → strided is always mergeable)
    s1, s2 = (stride, 1) if k2 == 1 else (1, stride)
    p1, p2 = ((k1 - 1) // 2, (k2 - 1) // 2) if same else (0, 0)
    seed = k1 * 100 + k2 * 10 + stride + groups1 + groups2
    layers = [_conv_bn(CHANNELS, CHANNELS, k1, s1, p1, groups1, seed),
              _conv_bn(CHANNELS, CHANNELS, k2, s2, p2, groups2, seed + 1)]
    x = torch.randn(2, CHANNELS, 13, 13, generator=torch.Generator().manual_seed(seed))
    merged = merge_chain([fold_bn(*layer) for layer in layers])
    assert merged.kernel == k1 + k2 - 1  # Σk − n + 1
    assert merged.stride == stride and merged.padding == p1 + p2
    assert merged.groups == (CHANNELS if groups1 == groups2 == CHANNELS else 1)
    assert _relative_error(merged, x, _reference(x, layers)) < 1e-4


@pytest.mark.parametrize("k", KERNELS)
@pytest.mark.parametrize("depthwise", [False, True])
def test_stride_then_1x1_chain_and_channel_changes(k: int, depthwise: bool) -> None:
    groups = 8 if depthwise else 1
    layers = [_conv_bn(4, 8, 1, 1, 0, 1, 1),                     # expand 4 → 8
              _conv_bn(8, 8, k, 1, (k - 1) // 2, groups, 2),     # stride-1 spatial conv
              _conv_bn(8, 8, 3, 2, 1, groups, 3),                # strided 3x3
              _conv_bn(8, 8, 1, 2, 0, 1, 4),                     # a strided 1x1 after it: strides multiply
              _conv_bn(8, 5, 1, 1, 0, 1, 5)]                     # project 8 → 5
    x = torch.randn(1, 4, 17, 17, generator=torch.Generator().manual_seed(k))
    merged = merge_chain([fold_bn(*layer) for layer in layers])
    assert (merged.kernel, merged.stride, merged.in_channels, merged.out_channels) == (k + 2, 4, 4, 5)
    assert _relative_error(merged, x, _reference(x, layers)) < 1e-4


def test_only_1x1_may_follow_a_strided_conv() -> None:
    strided = fold_bn(*_conv_bn(4, 4, 3, 2, 1, 1, 0))
    with pytest.raises(ValueError, match="1x1"):
        compose(strided, fold_bn(*_conv_bn(4, 4, 3, 1, 1, 1, 1)))


def test_bn_folding_formula() -> None:
    conv, bn = _conv_bn(3, 4, 3, 1, 1, 1, 7)
    folded = fold_bn(conv, bn)
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    assert torch.allclose(folded.weight, conv.weight.double() * scale.reshape(-1, 1, 1, 1))
    assert torch.allclose(folded.bias, (conv.bias.double() - bn.running_mean.double()) * scale + bn.bias.double())


@pytest.mark.parametrize("k1,k2", [(3, 3), (1, 3), (3, 1), (5, 3)])
@pytest.mark.parametrize("groups", [1, CHANNELS])
def test_identity_skip_absorbed_at_the_kernel_centre(k1: int, k2: int, groups: int) -> None:
    layers = [_conv_bn(CHANNELS, CHANNELS, k1, 1, (k1 - 1) // 2, groups, k1),
              _conv_bn(CHANNELS, CHANNELS, k2, 1, (k2 - 1) // 2, groups, k2 + 10)]
    x = torch.randn(2, CHANNELS, 9, 9, generator=torch.Generator().manual_seed(3))
    merged = add_identity(merge_chain([fold_bn(*layer) for layer in layers]))
    assert _relative_error(merged, x, x.double() + _reference(x, layers)) < 1e-4


def test_pruned_conv_is_the_identity_and_two_identities_add() -> None:
    x = torch.randn(1, 3, 5, 5)
    assert torch.allclose(identity_conv(3)(x.double()), x.double())
    assert torch.allclose(add_identity(identity_conv(3))(x.double()), 2 * x.double())


def test_identity_cannot_be_absorbed_by_a_shape_changing_conv() -> None:
    with pytest.raises(ValueError, match="shape-preserving"):
        add_identity(fold_bn(*_conv_bn(4, 4, 3, 1, 0, 1, 0)))
