"""The parity probe: validation images first, topped up with training images, never a test image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.data import DataBundle, Split
from edgekd.data.probe import describe_probe, probe_images
from edgekd.export.build import parity_message


def _split(first: int, count: int) -> Split:
    """``count`` 1x2x2 images whose every pixel is ``(first + i) / 1000``: the value names the image."""
    values = (first + torch.arange(count, dtype=torch.float32)) / 1000
    return Split(values.view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous(), torch.zeros(count, dtype=torch.int64))


def _bundle(n_train: int, n_val: int, n_test: int) -> DataBundle:
    """Train images are numbered from 0, validation from 300, test from 600."""
    return DataBundle(name="numbered", train=_split(0, n_train), val=_split(300, n_val), test=_split(600, n_test),
                      num_classes=1, in_channels=1, image_size=(2, 2), mean=(0.0,), std=(1.0,), class_names=("0",),
                      source="test")


def _ids(x: np.ndarray) -> list[int]:
    return [round(float(v) * 1000) for v in x[:, 0, 0, 0]]


@pytest.mark.parametrize(("count", "n_val", "n_train", "expected"), [
    (5, 3, 200, {"validation": 3, "train": 2}),  # a small validation split is topped up from train
    (2, 3, 200, {"validation": 2, "train": 0}),  # a large one gives every image
    (100, 3, 4, {"validation": 3, "train": 4}),  # both together too few: all of both, nothing else
    (3, 3, 200, {"validation": 3, "train": 0}),
])
def test_probe_takes_validation_then_train_and_never_test(count: int, n_val: int, n_train: int,
                                                          expected: dict[str, int]) -> None:
    probe = probe_images(_bundle(n_train, n_val, 250), count, seed=0)
    ids = _ids(probe.x)
    assert probe.splits == expected and len(ids) == sum(expected.values()) == len(probe.x)
    assert probe.x.dtype == np.float32 and probe.x.shape[1:] == (1, 2, 2)
    val_ids, train_ids = ids[: expected["validation"]], ids[expected["validation"]:]
    assert all(300 <= i < 300 + n_val for i in val_ids) and len(set(val_ids)) == len(val_ids)
    assert all(0 <= i < n_train for i in train_ids) and len(set(train_ids)) == len(train_ids)
    assert val_ids == sorted(val_ids) and train_ids == sorted(train_ids)  # each split keeps its order
    assert not any(i >= 600 for i in ids)


def test_probe_is_seeded_and_spreads_over_the_split() -> None:
    data = _bundle(200, 3, 10)
    first, again, other = (probe_images(data, 40, seed=s) for s in (0, 0, 1))
    assert np.array_equal(first.x, again.x) and not np.array_equal(first.x, other.x)
    train_ids = _ids(first.x)[3:]
    # a seeded subset of the 200 train images, not the first 37 (an image folder's train split is sorted by class)
    assert train_ids != list(range(37)) and max(train_ids) > 100


def test_probe_needs_an_image() -> None:
    with pytest.raises(ValueError, match="at least one image"):
        probe_images(_bundle(4, 3, 2), 0, seed=0)


def test_parity_failure_names_the_probe_splits() -> None:
    assert describe_probe({"validation": 144, "train": 368}) == "512 images (144 validation + 368 train)"
    assert describe_probe({"validation": 512, "train": 0}) == "512 images (512 validation)"
    line = parity_message({"samples": 512, "probe": {"validation": 144, "train": 368}, "max_abs_diff": 0.3,
                           "top1_agreement": 0.97, "atol": 0.25, "rtol": 0.08, "min_top1_agreement": 0.98})
    assert line.startswith("parity check failed against torch on 512 images (144 validation + 368 train): ")
    assert "test" not in line
