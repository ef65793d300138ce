"""The probe images that parity and agreement checks compare an artifact with its torch model on.

A parity check asks whether an exported artifact computes the same function as the model it comes from, so any image
of the data set's distribution will do; its verdict excludes an artifact from selection, so it is a choice and reads
no test image. The probe is the validation split first (a seeded subset when it holds more images than asked), topped
up with seeded training images when it holds fewer: a small validation split (e.g. sklearn digits) would otherwise
give a probe on which one or two disagreements decide an agreement threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekd.data.bundle import DataBundle

PROBE_SPLITS = ("validation", "train")
"""The splits a probe draws from, in order (in the cache key of every stage that checks parity)."""


@dataclass(frozen=True)
class Probe:
    """Probe images and where they came from.

    Attributes:
        x: float32 NCHW images in [0, 1], validation images first, then training images.
        splits: how many images each split gave, ``{"validation": n, "train": m}`` (what the manifest records).
    """

    x: np.ndarray
    splits: dict[str, int]


def describe_probe(splits: dict[str, int]) -> str:
    """``512 images (144 validation + 368 train)`` for a probe's ``splits``."""
    parts = " + ".join(f"{n} {split}" for split, n in splits.items() if n)
    return f"{sum(splits.values())} images ({parts or 'none'})"


def probe_images(data: DataBundle, count: int, seed: int) -> Probe:
    """``count`` images of ``data`` for a parity check: ``min(count, len(val))`` validation images, then as many
    training images as are still missing (fewer only when both splits together hold fewer than ``count``); each
    split's images are a ``seed``-ed subset, kept in their split's order."""
    if count < 1:
        raise ValueError(f"a probe needs at least one image, got count={count}")
    val = data.val.subset(min(count, len(data.val)), seed)
    train = data.train.subset(min(count - len(val), len(data.train)), seed)
    parts = [split.x[:].numpy() for split in (val, train) if len(split)]
    x = np.concatenate(parts) if parts else np.zeros((0, *data.val.x.shape[1:]), np.float32)
    return Probe(x=x, splits=dict(zip(PROBE_SPLITS, (len(val), len(train)), strict=True)))
