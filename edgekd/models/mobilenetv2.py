"""MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018).

A 3×3 stem, seventeen inverted-residual blocks (1×1 expansion by ``t`` + ReLU6, 3×3 depthwise + ReLU6, linear 1×1
projection; identity skip when the stride is 1 and the channels are unchanged), a 1×1 conv to 1280 channels, global
average pooling and a dropout + linear classifier. Channels are ``width_mult`` times the paper's, rounded to
multiples of 8. Module names follow the reference PyTorch port (``features.N.conv...``, ``classifier.1``).

``small_input=True`` (the default) is the usual CIFAR port: the stem and the first stride-2 stage use stride 1, so
the network downsamples 8× instead of 32× and 8×8, 28×28 and 32×32 inputs keep enough resolution.
"""

from __future__ import annotations

import torch
from torch import nn

from edgekd.models._layers import check_positive, check_positive_int, init_weights, make_divisible
from edgekd.models.factory import MODELS

# (expansion t, output channels c, repeats n, first stride s): Table 2 of the paper
_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
_STEM_CHANNELS = 32
_LAST_CHANNELS = 1280


def _conv_bn_relu6(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Conv (no bias, "same" padding) + BN + ReLU6 as one ``nn.Sequential`` (children ``0``, ``1``, ``2``)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels), nn.ReLU6())


class InvertedResidual(nn.Module):
    """Expand (1×1, ×t) → depthwise 3×3 (stride) → linear 1×1 projection, plus ``x`` when shapes allow."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = int(round(in_channels * expansion))
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(_conv_bn_relu6(in_channels, hidden, 1))
        layers += [
            _conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2; see the module docstring.

    Args:
        num_classes: outputs of the classifier.
        in_channels: channels of the input image.
        width_mult: multiplier of every block's channels (the last 1×1 conv never goes below 1280).
        small_input: stride 1 in the stem and in the first stride-2 stage (CIFAR-style), for inputs ≤ 64×64.
        dropout: dropout probability before the classifier.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        width_mult: float = 1.0,
        small_input: bool = True,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        check_positive_int(num_classes=num_classes, in_channels=in_channels)
        check_positive(width_mult=width_mult)
        if not isinstance(small_input, bool):
            raise ValueError(f"small_input must be true or false, got {small_input!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        channels = make_divisible(_STEM_CHANNELS * width_mult)
        last_channels = make_divisible(_LAST_CHANNELS * max(1.0, width_mult))
        features: list[nn.Module] = [_conv_bn_relu6(in_channels, channels, 3, stride=1 if small_input else 2)]
        first_downsample = True
        for expansion, out, repeats, stride in _SETTINGS:
            if stride == 2 and first_downsample:
                first_downsample = False
                stride = 1 if small_input else 2
            out_channels = make_divisible(out * width_mult)
            for index in range(repeats):
                features.append(InvertedResidual(channels, out_channels, stride if index == 0 else 1, expansion))
                channels = out_channels
        features.append(_conv_bn_relu6(channels, last_channels, 1))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last_channels, num_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


_META = {
    "family": "mobilenetv2",
    "paper": "Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks, CVPR 2018",
    # last block of the 24-, 32-, 96- and 320-channel stages (one per resolution with small_input)
    "default_taps": ["features.3", "features.6", "features.13", "features.17"],
}


@MODELS.register(**_META, description="MobileNetV2, width 1.0 (3.5M parameters with 1000 classes)")
def mobilenetv2(
    num_classes: int = 10,
    in_channels: int = 3,
    width_mult: float = 1.0,
    small_input: bool = True,
    dropout: float = 0.2,
) -> MobileNetV2:
    """MobileNetV2 with a width multiplier; small-input stem by default."""
    return MobileNetV2(num_classes, in_channels, width_mult, small_input, dropout)


@MODELS.register(**_META, description="MobileNetV2, width 0.5")
def mobilenetv2_x0_5(
    num_classes: int = 10,
    in_channels: int = 3,
    width_mult: float = 0.5,
    small_input: bool = True,
    dropout: float = 0.2,
) -> MobileNetV2:
    """MobileNetV2 at half width (channels still multiples of 8, last conv 1280)."""
    return MobileNetV2(num_classes, in_channels, width_mult, small_input, dropout)
