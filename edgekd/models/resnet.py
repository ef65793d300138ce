"""CIFAR-style ResNets (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, section 4.2).

Depth ``6n + 2``: a 3×3 stem, three stages of ``n`` BasicBlocks with 16/32/64 channels (× ``width``) at strides
1/2/2, global average pooling and a linear classifier. When a block changes the shape, its shortcut is a 1×1
convolution + BN (option B); otherwise it is the identity. This is the family of the TAKD (Mirzadeh et al. 2020) and
RepDistiller (Tian et al. 2020) model zoos, with the same parameter names (``conv1, bn1, layer1..3, fc``;
``downsample`` in blocks), so their state dicts load here.

Every activation is its own ``nn.ReLU`` module, used once, so a torch.fx graph of the model names each activation
position separately (LayerMerge replaces activations one by one).
"""

from __future__ import annotations

import torch
from torch import nn

from edgekd.models._layers import check_positive, check_positive_int, init_weights, scale_channels
from edgekd.models.factory import MODELS

_STAGE_CHANNELS = (16, 32, 64)
_STAGE_STRIDES = (1, 2, 2)
_META = {
    "family": "resnet",
    "paper": "He et al., Deep Residual Learning for Image Recognition, CVPR 2016 (CIFAR variant)",
    "default_taps": ["layer1", "layer2", "layer3"],
}


class BasicBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`` with 3×3 convolutions."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False), nn.BatchNorm2d(channels)
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + identity)


class CifarResNet(nn.Module):
    """A CIFAR ResNet of depth ``6n + 2``; see the module docstring.

    Args:
        depth: total number of weighted layers, ``6n + 2`` (8, 14, 20, ...).
        num_classes: outputs of the classifier.
        in_channels: channels of the input image.
        width: multiplier of the stage channels 16/32/64.
        stem_channels: output channels of the stem convolution (default: the first stage's channels).
    """

    def __init__(
        self,
        depth: int,
        num_classes: int = 10,
        in_channels: int = 3,
        width: float = 1.0,
        stem_channels: int | None = None,
    ) -> None:
        super().__init__()
        check_positive_int(num_classes=num_classes, in_channels=in_channels)
        check_positive(width=width)
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1, got {depth}")
        stages = [scale_channels(c, width) for c in _STAGE_CHANNELS]
        stem = stages[0] if stem_channels is None else stem_channels
        check_positive_int(stem_channels=stem)
        blocks_per_stage = (depth - 2) // 6

        self.conv1 = nn.Conv2d(in_channels, stem, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU()
        channels = stem
        layers = []
        for out_channels, stride in zip(stages, _STAGE_STRIDES):
            blocks = []
            for index in range(blocks_per_stage):
                blocks.append(BasicBlock(channels, out_channels, stride if index == 0 else 1))
                channels = out_channels
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _describe(depth: int, width: int = 1) -> str:
    blocks = (depth - 2) // 6
    channels = "/".join(str(c * width) for c in _STAGE_CHANNELS)
    return f"CIFAR ResNet-{depth}: 3 stages × {blocks} BasicBlocks, {channels} channels"


@MODELS.register(**_META, description=_describe(8))
def resnet8(
    num_classes: int = 10, in_channels: int = 3, width: float = 1.0, stem_channels: int | None = None
) -> CifarResNet:
    """ResNet-8 (n = 1), the smallest TAKD student."""
    return CifarResNet(8, num_classes, in_channels, width, stem_channels)


@MODELS.register(**_META, description=_describe(14))
def resnet14(
    num_classes: int = 10, in_channels: int = 3, width: float = 1.0, stem_channels: int | None = None
) -> CifarResNet:
    """ResNet-14 (n = 2)."""
    return CifarResNet(14, num_classes, in_channels, width, stem_channels)


@MODELS.register(**_META, description=_describe(20))
def resnet20(
    num_classes: int = 10, in_channels: int = 3, width: float = 1.0, stem_channels: int | None = None
) -> CifarResNet:
    """ResNet-20 (n = 3), 0.27M parameters in the paper."""
    return CifarResNet(20, num_classes, in_channels, width, stem_channels)


@MODELS.register(**_META, description=_describe(26))
def resnet26(
    num_classes: int = 10, in_channels: int = 3, width: float = 1.0, stem_channels: int | None = None
) -> CifarResNet:
    """ResNet-26 (n = 4)."""
    return CifarResNet(26, num_classes, in_channels, width, stem_channels)


@MODELS.register(**_META, description=_describe(32))
def resnet32(
    num_classes: int = 10, in_channels: int = 3, width: float = 1.0, stem_channels: int | None = None
) -> CifarResNet:
    """ResNet-32 (n = 5), 0.46M parameters in the paper."""
    return CifarResNet(32, num_classes, in_channels, width, stem_channels)


@MODELS.register(**_META, description=_describe(44))
def resnet44(
    num_classes: int = 10, in_channels: int = 3, width: float = 1.0, stem_channels: int | None = None
) -> CifarResNet:
    """ResNet-44 (n = 7), 0.66M parameters in the paper."""
    return CifarResNet(44, num_classes, in_channels, width, stem_channels)


@MODELS.register(**_META, description=_describe(56))
def resnet56(
    num_classes: int = 10, in_channels: int = 3, width: float = 1.0, stem_channels: int | None = None
) -> CifarResNet:
    """ResNet-56 (n = 9), 0.85M parameters in the paper."""
    return CifarResNet(56, num_classes, in_channels, width, stem_channels)


@MODELS.register(**_META, description=_describe(110))
def resnet110(
    num_classes: int = 10, in_channels: int = 3, width: float = 1.0, stem_channels: int | None = None
) -> CifarResNet:
    """ResNet-110 (n = 18), 1.7M parameters in the paper; the TAKD teacher."""
    return CifarResNet(110, num_classes, in_channels, width, stem_channels)


@MODELS.register(**_META, description=_describe(8, 4) + " (RepDistiller resnet8x4, stem 32)")
def resnet8x4(
    num_classes: int = 10, in_channels: int = 3, width: float = 4.0, stem_channels: int | None = 32
) -> CifarResNet:
    """ResNet-8 four times wider, with RepDistiller's 32-channel stem (1.23M parameters with 100 classes)."""
    return CifarResNet(8, num_classes, in_channels, width, stem_channels)


@MODELS.register(**_META, description=_describe(32, 4) + " (RepDistiller resnet32x4, stem 32)")
def resnet32x4(
    num_classes: int = 10, in_channels: int = 3, width: float = 4.0, stem_channels: int | None = 32
) -> CifarResNet:
    """ResNet-32 four times wider, with RepDistiller's 32-channel stem (7.43M parameters with 100 classes)."""
    return CifarResNet(32, num_classes, in_channels, width, stem_channels)
