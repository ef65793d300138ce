"""Private machinery shared by the zoo families: argument checks, channel scaling, weight initialisation."""

from __future__ import annotations

from torch import nn


def check_positive(**values: float | int) -> None:
    """Raise ValueError naming the first argument that is not a positive number (bools are rejected too)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")


def check_positive_int(**values: int) -> None:
    """Raise ValueError naming the first argument that is not a positive integer."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def scale_channels(channels: int, width: float) -> int:
    """``channels × width`` rounded to the nearest integer, at least 1."""
    return max(1, int(round(channels * width)))


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` without going below 90 % of it.

    The rule of the MobileNet family (Sandler et al. 2018, reference implementation), so hardware sees channel
    counts that are multiples of 8.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def init_weights(model: nn.Module) -> None:
    """He (kaiming) normal init for convolutions (fan-out, ReLU gain), BN weight 1 / bias 0, linear N(0, 0.01).

    He et al., "Delving Deep into Rectifiers", ICCV 2015: ``W ~ N(0, 2 / fan_out)``.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.zeros_(module.bias)

