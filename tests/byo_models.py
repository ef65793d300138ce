"""Stand-in user models for tests/test_byo_model.py, imported by path as ``tests.byo_models:<factory>``.

``TinyClassifier`` returns its logits the ways models in the wild do: an output object with ``.logits`` and extra
fields (as Hugging Face ``transformers``' ``ImageClassifierOutputWithNoAttention``, without the dependency), a dict,
a tuple ``(logits, features)``, or a plain tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn


@dataclass
class ClassifierOutput:
    """Hugging Face style output: the logits, and the pooled features beside them."""

    logits: Tensor
    pooler_output: Tensor


class TinyClassifier(nn.Module):
    """conv-BN-ReLU stem, global average pool, linear head; ``returns`` picks the form of the output."""

    def __init__(self, num_classes: int, in_channels: int, returns: str) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, num_classes)
        self.returns = returns

    def forward(self, x: Tensor) -> object:
        features = self.pool(self.stem(x)).flatten(1)
        logits = self.head(features)
        if self.returns == "object":
            return ClassifierOutput(logits=logits, pooler_output=features)
        if self.returns == "dict":
            return {"pooler_output": features, "logits": logits}
        if self.returns == "tuple":
            return logits, features
        if self.returns == "features-first":
            return [features, logits]
        if self.returns == "none":
            return None
        return logits


def factory(num_classes: int, in_channels: int = 3, returns: str = "object") -> TinyClassifier:
    """A user factory that takes the data's classes and channels by name."""
    return TinyClassifier(num_classes, in_channels, returns)


def ten_classes(in_channels: int = 3) -> TinyClassifier:
    """A factory that cannot be told the number of classes: always 10 outputs."""
    return TinyClassifier(10, in_channels, "object")


def raising(num_classes: int, in_channels: int = 3) -> nn.Module:
    """A model whose forward fails on any input."""
    return _Raising()


class _Raising(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        raise RuntimeError(f"expected 4 features, got shape {tuple(x.shape)}\nsecond line of the message")


def classes_only(num_classes: int) -> nn.Module:
    """A factory without an ``in_channels`` parameter (RGB only): only ``num_classes`` is passed to it."""
    return TinyClassifier(num_classes, 3, "tensor")

