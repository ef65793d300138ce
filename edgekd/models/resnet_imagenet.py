"""ImageNet-style ResNets (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, Table 1).

A 7×7 stride-2 stem and a 3×3 stride-2 max-pool, four stages of BasicBlocks (ResNet-18/34) or Bottlenecks
(ResNet-50; the stride sits on the 3×3 convolution, "ResNet v1.5" as in torchvision) with 64/128/256/512 base
channels at strides 1/2/2/2, global average pooling and a linear classifier — the usual edge teachers. A shortcut
that changes the shape is a 1×1 convolution + BN (option B). Parameter names are torchvision's (``conv1, bn1,
layer1..4, fc``; ``downsample.0/1`` in blocks), so torchvision state dicts load here.

``small_input=True`` swaps the stem for a 3×3 stride-1 convolution without max-pool (the CIFAR variant of
ResNet-18, e.g. kuangliu/pytorch-cifar), so 32×32 inputs are downsampled 8× instead of 32×.
"""

from __future__ import annotations

import torch
from torch import nn

from edgekd.models._layers import check_positive_int, init_weights
from edgekd.models.factory import MODELS
from edgekd.models.resnet import BasicBlock

_STAGE_CHANNELS = (64, 128, 256, 512)
_STAGE_STRIDES = (1, 2, 2, 2)
_META = {
    "family": "resnet-imagenet",
    "paper": "He et al., Deep Residual Learning for Image Recognition, CVPR 2016 (ImageNet variant)",
    "default_taps": ["layer1", "layer2", "layer3", "layer4"],
}


class Bottleneck(nn.Module):
    """``relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))``: 1×1 → 3×3 (stride) → 1×1 (×4)."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.relu3 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        return self.relu3(self.bn3(self.conv3(out)) + identity)


class ImageNetResNet(nn.Module):
    """An ImageNet ResNet; see the module docstring.

    Args:
        blocks: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        bottleneck: Bottleneck blocks (ResNet-50 and deeper) instead of BasicBlocks.
        num_classes: outputs of the classifier.
        in_channels: channels of the input image.
        small_input: 3×3 stride-1 stem without max-pool, for inputs below 64×64.
    """

    def __init__(
        self,
        blocks: tuple[int, int, int, int],
        bottleneck: bool,
        num_classes: int = 1000,
        in_channels: int = 3,
        small_input: bool = False,
    ) -> None:
        super().__init__()
        check_positive_int(num_classes=num_classes, in_channels=in_channels)
        if not isinstance(small_input, bool):
            raise ValueError(f"small_input must be true or false, got {small_input!r}")
        stem = _STAGE_CHANNELS[0]
        if small_input:
            self.conv1 = nn.Conv2d(in_channels, stem, 3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU()
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(3, stride=2, padding=1)
        block = Bottleneck if bottleneck else BasicBlock
        expansion = Bottleneck.expansion if bottleneck else 1
        channels = stem
        layers = []
        for width, stride, count in zip(_STAGE_CHANNELS, _STAGE_STRIDES, blocks):
            stage = []
            for index in range(count):
                stage.append(block(channels, width, stride if index == 0 else 1))
                channels = width * expansion
            layers.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@MODELS.register(**_META, description="ResNet-18: 4 stages × 2 BasicBlocks, 64-512 channels (11.7M parameters "
                 "with 1000 classes)")
def resnet18(num_classes: int = 10, in_channels: int = 3, small_input: bool = False) -> ImageNetResNet:
    """ResNet-18 (BasicBlocks 2-2-2-2)."""
    return ImageNetResNet((2, 2, 2, 2), False, num_classes, in_channels, small_input)


@MODELS.register(**_META, description="ResNet-34: 4 stages of 3/4/6/3 BasicBlocks (21.8M parameters with 1000 "
                 "classes)")
def resnet34(num_classes: int = 10, in_channels: int = 3, small_input: bool = False) -> ImageNetResNet:
    """ResNet-34 (BasicBlocks 3-4-6-3)."""
    return ImageNetResNet((3, 4, 6, 3), False, num_classes, in_channels, small_input)


@MODELS.register(**_META, description="ResNet-50: 4 stages of 3/4/6/3 Bottlenecks (25.6M parameters with 1000 "
                 "classes)")
def resnet50(num_classes: int = 10, in_channels: int = 3, small_input: bool = False) -> ImageNetResNet:
    """ResNet-50 (Bottlenecks 3-4-6-3, stride on the 3×3 convolution)."""
    return ImageNetResNet((3, 4, 6, 3), True, num_classes, in_channels, small_input)
