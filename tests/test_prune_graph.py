"""torch.fx analysis of the LayerMerge conv chain, candidate segments and their kernel options."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgekd.errors import UserError
from edgekd.models import create
from edgekd.prune.graph import Skip, analyse
from edgekd.prune.segments import (
    Plan,
    Segment,
    candidate_options,
    drop_changes,
    option_of,
    segment_options,
    valid_structure,
)

X = torch.rand(2, 1, 28, 28)


def test_resnet8_chain_skips_and_strides() -> None:
    chain = analyse(create("resnet8", num_classes=10, in_channels=1), X)
    assert chain.depth == 7  # stem + 3 blocks × 2 convs (downsample convs are skip branches)
    assert chain.skips == (Skip(1, 3, True), Skip(3, 5, False), Skip(5, 7, False))
    assert [layer.stride for layer in chain.layers] == [1, 1, 1, 2, 1, 2, 1]
    assert [layer.droppable for layer in chain.layers] == [False, True, True, False, True, False, True]
    assert chain.barriers == frozenset()
    assert chain.layer(4).input_shape == (2, 16, 28, 28) and chain.shapes[7] == (2, 64, 7, 7)
    assert chain.layer(1).activation is not None and chain.layer(2).bn == "layer1.0.bn1"


def test_plain_cnn_pooling_is_a_barrier() -> None:
    chain = analyse(create("plain4", num_classes=10, in_channels=1), X)
    assert chain.depth == 4 and chain.skips == () and chain.barriers == frozenset({2})
    assert chain.layer(3).input_shape == (2, 16, 14, 14)  # after the 2×2 max-pool
    assert not valid_structure(chain, 1, 3) and valid_structure(chain, 2, 4) and valid_structure(chain, 0, 2)


def test_mobilenetv2_linear_bottlenecks_and_identity_skips() -> None:
    chain = analyse(create("mobilenetv2_x0_5", num_classes=10, in_channels=1), X)
    assert chain.depth == 52  # stem, 1 block of 2 convs, 16 blocks of 3, last 1x1
    assert sum(s.identity for s in chain.skips) == len(chain.skips) == 10
    assert chain.layer(3).activation is None  # the linear projection of the first block
    assert chain.layer(2).depthwise and not chain.layer(3).depthwise


def test_user_sequential_cnn() -> None:
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 8, 5, padding=2), nn.BatchNorm2d(8), nn.SiLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    chain = analyse(net, X)
    assert chain.depth == 3 and chain.barriers == frozenset({2})
    assert [layer.bn for layer in chain.layers] == ["1", None, "7"]
    assert type(chain.layer(3).activation).__name__ == "SiLU"


class _Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(1, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.a(x), self.b(x)], 1)


class _Dynamic(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) if x.sum() > 0 else x


class _Tapped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.bn, self.c2 = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c1(x)
        return self.c2(torch.relu(self.bn(y))) * y.mean()


@pytest.mark.parametrize("model,match", [
    (_Concat(), "same number of convolutions"),
    (_Dynamic(), "cannot trace"),
    (nn.Sequential(nn.Conv2d(1, 4, 3, dilation=2), nn.ReLU()), "dilated"),
    (nn.Sequential(nn.Conv2d(1, 4, (3, 1)), nn.ReLU()), "non-square kernel"),
    (_Tapped(), "also read by"),
    (nn.Sequential(nn.Flatten(), nn.Linear(784, 3)), "no Conv2d"),
])
def test_unanalysable_models_name_the_node(model: nn.Module, match: str) -> None:
    with pytest.raises(UserError, match=match):
        analyse(model, X)


def test_resnet8_segment_rules() -> None:
    chain = analyse(create("resnet8", num_classes=10, in_channels=1), X)
    assert valid_structure(chain, 0, 3)       # covers the identity skip 1→3: absorbed
    assert valid_structure(chain, 1, 2) and valid_structure(chain, 2, 3)  # inside it
    assert not valid_structure(chain, 2, 4)   # crosses 1→3
    assert valid_structure(chain, 3, 5) and valid_structure(chain, 4, 5)  # inside the projection skip 3→5
    assert not valid_structure(chain, 2, 5)   # would cover a projection skip
    # stride rule: layer 4 is a strided 3x3 (irreducible), so the 3x3 layer 5 after it must be dropped
    (option,) = segment_options(chain, 3, 5)
    assert option.segment.kept == (4,) and (option.kernel, option.stride, option.padding) == (3, 2, 1)
    assert option_of(chain, 3, 5, (4, 5)) is None and option_of(chain, 3, 5, (5,)) is None
    # block 1 with its skip absorbed: keep one conv (k3) or both (k5); the stem is irreducible (1→16 channels)
    options = segment_options(chain, 0, 3)
    assert [o.kernel for o in options] == [3, 5, 7]
    assert options[0].segment.kept == (1,) and options[2].segment.kept == (1, 2, 3)
    l1 = {i: float(chain.module.get_submodule(chain.layer(i).conv).weight.detach().abs().sum()) for i in (2, 3)}
    assert options[1].segment.kept == (1, max(l1, key=l1.get))  # the larger-L1 conv of the two is kept


def test_max_l1_subset_is_kept() -> None:
    chain = analyse(create("resnet8", num_classes=10, in_channels=1), X)
    with torch.no_grad():
        chain.module.get_submodule(chain.layer(3).conv).weight.mul_(10.0)
    (k3,) = [o for o in segment_options(chain, 1, 3) if o.kernel == 3]
    assert k3.segment.kept == (3,)


def test_max_kernel_and_plan_checks() -> None:
    chain = analyse(create("resnet8", num_classes=10, in_channels=1), X)
    assert all(o.kernel <= 3 for o in candidate_options(chain, max_kernel=3))
    Plan.unpruned(chain).check(chain)
    Plan.single(chain, Segment(1, 3, (2,))).check(chain)
    with pytest.raises(UserError, match="not a candidate"):
        Plan((Segment(0, 1, (1,)), Segment(1, 2, (2,)), Segment(2, 4, (3, 4)))).check(chain)
    with pytest.raises(UserError, match="ends at position"):
        Plan((Segment(0, 1, (1,)),)).check(chain)


def test_layer_pruning_plan_keeps_every_activation() -> None:
    chain = analyse(create("resnet8", num_classes=10, in_channels=1), X)
    assert [k for k, _ in drop_changes(chain)] == ["drop-2", "drop-3", "drop-5", "drop-7"]
    plan = Plan.layer_pruned(chain, {2, 5})
    plan.check(chain)
    assert plan.positions == tuple(range(8)) and plan.kept == frozenset({1, 3, 4, 6, 7})
    with pytest.raises(UserError, match="cannot be pruned"):
        Plan.layer_pruned(chain, {4})
