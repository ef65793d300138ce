"""Plain CNNs of TAKD (Mirzadeh et al., "Improved Knowledge Distillation via Teacher Assistant", AAAI 2020).

A stack of 3×3 conv + BN + ReLU layers in groups separated by 2×2 max-pooling, then a small MLP head; the name
counts the conv layers (``plain2`` ... ``plain10``). Channel plans are those of the paper's CIFAR-10 and CIFAR-100
experiments (``plan="cifar10"`` / ``"cifar100"``), e.g. plain6 on CIFAR-10: 16, 16, pool, 32, 32, pool, 64, 64, pool.

Two changes make the family input-size independent (8×8 digits, 28×28 MNIST, 32×32 CIFAR): max-pooling uses
``ceil_mode=True``, so a 1×1 map stays 1×1 instead of vanishing (8×8 → 4 → 2 → 1 → 1), and the head reads a
global average of the last feature map (``AdaptiveAvgPool2d(1)``) instead of flattening a CIFAR-sized 32/2^k map.
The hidden fully connected layers of plain8/plain10 are kept. Convolutions have no bias (a BN follows each one).
"""

from __future__ import annotations

import torch
from torch import nn

from edgekd.models._layers import check_positive_int, init_weights
from edgekd.models.factory import MODELS

_POOL = "M"
Layer = int | str

# conv channels and "M" (2×2 max-pool), then the hidden sizes of the head, per plan and number of conv layers
_PLANS: dict[str, dict[int, tuple[tuple[Layer, ...], tuple[int, ...]]]] = {
    "cifar10": {
        2: ((16, "M", 16, "M"), ()),
        4: ((16, 16, "M", 32, 32, "M"), ()),
        6: ((16, 16, "M", 32, 32, "M", 64, 64, "M"), ()),
        8: ((16, 16, "M", 32, 32, "M", 64, 64, "M", 128, 128, "M"), (64,)),
        10: ((32, 32, "M", 64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"), (128,)),
    },
    "cifar100": {
        2: ((32, "M", 32, "M"), ()),
        4: ((32, 32, "M", 64, 64, "M"), ()),
        6: ((32, 32, "M", 64, 64, "M", 128, 128), ()),
        8: ((32, 32, "M", 64, 64, "M", 128, 128, "M", 256, 256, "M"), (64,)),
        10: ((32, 32, "M", 64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"), (512,)),
    },
}


def _group_taps(layers: tuple[Layer, ...]) -> list[str]:
    """Module paths (``features.N``) of the last ReLU of each conv group, i.e. the stage outputs before pooling."""
    taps: list[str] = []
    index = 0
    for position, layer in enumerate(layers):
        if layer == _POOL:
            index += 1
            continue
        index += 3  # conv, bn, relu
        if position + 1 == len(layers) or layers[position + 1] == _POOL:
            taps.append(f"features.{index - 1}")
    return taps


class PlainCNN(nn.Module):
    """A TAKD plain CNN; see the module docstring.

    Args:
        depth: number of conv layers (2, 4, 6, 8 or 10).
        num_classes: outputs of the classifier.
        in_channels: channels of the input image.
        plan: channel plan of the paper, ``"cifar10"`` or ``"cifar100"``.
    """

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3, plan: str = "cifar10") -> None:
        super().__init__()
        check_positive_int(num_classes=num_classes, in_channels=in_channels)
        if plan not in _PLANS:
            raise ValueError(f"plan must be one of {', '.join(map(repr, _PLANS))}, got {plan!r}")
        layers, hidden = _PLANS[plan][depth]
        features: list[nn.Module] = []
        channels = in_channels
        for layer in layers:
            if layer == _POOL:
                features.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
            else:
                out_channels = int(layer)
                conv = nn.Conv2d(channels, out_channels, 3, padding=1, bias=False)
                features += [conv, nn.BatchNorm2d(out_channels), nn.ReLU()]
                channels = out_channels
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        head: list[nn.Module] = []
        for size in hidden:
            head += [nn.Linear(channels, size), nn.ReLU()]
            channels = size
        head.append(nn.Linear(channels, num_classes))
        self.classifier = nn.Sequential(*head)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


_PAPER = "Mirzadeh et al., Improved Knowledge Distillation via Teacher Assistant, AAAI 2020"


def _meta(depth: int) -> dict[str, object]:
    layers, hidden = _PLANS["cifar10"][depth]
    convs = ", ".join("pool" if layer == _POOL else str(layer) for layer in layers)
    head = f", FC {hidden[0]}" if hidden else ""
    return {
        "family": "plain",
        "paper": _PAPER,
        "default_taps": _group_taps(layers),
        "description": f"TAKD plain CNN, {depth} conv layers (CIFAR-10 plan: {convs}{head})",
    }


@MODELS.register(**_meta(2))
def plain2(num_classes: int = 10, in_channels: int = 3, plan: str = "cifar10") -> PlainCNN:
    """Plain CNN with 2 conv layers."""
    return PlainCNN(2, num_classes, in_channels, plan)


@MODELS.register(**_meta(4))
def plain4(num_classes: int = 10, in_channels: int = 3, plan: str = "cifar10") -> PlainCNN:
    """Plain CNN with 4 conv layers."""
    return PlainCNN(4, num_classes, in_channels, plan)


@MODELS.register(**_meta(6))
def plain6(num_classes: int = 10, in_channels: int = 3, plan: str = "cifar10") -> PlainCNN:
    """Plain CNN with 6 conv layers."""
    return PlainCNN(6, num_classes, in_channels, plan)


@MODELS.register(**_meta(8))
def plain8(num_classes: int = 10, in_channels: int = 3, plan: str = "cifar10") -> PlainCNN:
    """Plain CNN with 8 conv layers and a 64-unit hidden layer."""
    return PlainCNN(8, num_classes, in_channels, plan)


@MODELS.register(**_meta(10))
def plain10(num_classes: int = 10, in_channels: int = 3, plan: str = "cifar10") -> PlainCNN:
    """Plain CNN with 10 conv layers and a hidden layer (128 units, 512 with the CIFAR-100 plan): the TAKD teacher."""
    return PlainCNN(10, num_classes, in_channels, plan)
