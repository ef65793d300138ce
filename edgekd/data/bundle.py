"""Splits and the bundle a data set loads into: images as float32 NCHW in [0, 1], labels as int64.

Small data sets hold their images as tensors; data sets read from disk (image folders, ``.npz`` files) hold a
memory-mapped :class:`~edgekd.data.images.ImageArray` that converts rows batch by batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from edgekd.data.images import ImageArray
from edgekd.errors import UserError

STD_FLOOR = 1e-6
"""Smallest per-channel std reported, so that a constant channel normalises to 0 rather than to NaN."""


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a data set.

    Attributes:
        x: images, float32, shape ``(N, C, H, W)``, values in [0, 1]: a tensor, or an on-disk
            :class:`ImageArray` whose indexing (``x[index]``, ``x[a:b]``) gives tensors.
        y: labels, int64, shape ``(N,)``.
    """

    x: torch.Tensor | ImageArray
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.dtype != torch.float32 or self.x.dim() != 4:
            raise ValueError(f"Split.x must be float32 NCHW, got {self.x.dtype} of shape {tuple(self.x.shape)}")
        if self.y.dtype != torch.int64 or self.y.dim() != 1 or len(self.y) != len(self.x):
            raise ValueError(f"Split.y must be int64 of shape ({len(self.x)},), got {self.y.dtype} {self.y.shape}")

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index: torch.Tensor) -> Split:
        """The samples at ``index`` (a 1-D integer tensor), in that order."""
        return Split(self.x.index_select(0, index), self.y[index])

    def subset(self, n: int, seed: int) -> Split:
        """A deterministic random subset of ``n`` samples (in their original order); ``self`` if ``n >= len``."""
        if n < 0:
            raise ValueError(f"subset size must be >= 0, got {n}")
        if n >= len(self):
            return self
        generator = torch.Generator().manual_seed(seed)
        index = torch.randperm(len(self), generator=generator)[:n].sort().values
        return self.take(index)


@dataclass(frozen=True)
class DataBundle:
    """A loaded data set: train / val / test splits and what a model and the manifest need to know about them.

    ``mean`` and ``std`` are per channel, computed on the final train split (after the validation carve-out);
    ``source`` says where the data came from (a path, or ``"sklearn"``).
    """

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    source: str


def split_from_arrays(x: np.ndarray, y: np.ndarray, *, what: str) -> Split:
    """A :class:`Split` from NCHW images (uint8 scaled by 1/255, or floats already in [0, 1]) and integer labels.

    ``what`` names the arrays in the UserError raised for any other pixel type, out-of-range floats or bad labels.
    """
    if x.dtype == np.uint8:
        images = torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0)
    elif np.issubdtype(x.dtype, np.floating):
        images = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if images.numel() and not (images.min() >= 0 and images.max() <= 1):
            raise UserError(
                f"{what}: float images must be in [0, 1], got {float(images.min()):g}..{float(images.max()):g}"
            )
    else:
        raise UserError(f"{what}: images must be uint8 (0..255) or float in [0, 1], got {x.dtype}")
    if y.ndim != 1 or len(y) != len(x) or not (np.issubdtype(y.dtype, np.integer) or len(y) == 0):
        raise UserError(f"{what}: labels must be {len(x)} integers (one per image), got {y.dtype} {y.shape}")
    return Split(images, torch.from_numpy(y.astype(np.int64)))


@dataclass(frozen=True)
class RawData:
    """What a data set's loader returns: its train and test splits, before the validation carve-out."""

    train: Split
    test: Split
    class_names: tuple[str, ...]
    source: str


def stratified_indices(
    y: torch.Tensor, held_out: float | int, seed: int, *, what: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``range(len(y))`` into sorted (kept, held-out) index tensors with the class proportions of ``y``.

    ``held_out`` is a share in [0, 1) (float) or a number of samples (int). Uses scikit-learn's
    ``train_test_split(stratify=y)``; deterministic for a given ``seed``. ``what`` names the split for the error
    raised when the classes are too small to stratify (e.g. ``"data set 'npz': validation"``).
    """
    if held_out == 0:
        return torch.arange(len(y)), torch.zeros(0, dtype=torch.int64)
    from sklearn.model_selection import train_test_split

    labels = y.numpy()
    try:
        kept, held = train_test_split(range(len(labels)), test_size=held_out, random_state=seed, stratify=labels)
    except ValueError as error:
        raise UserError(
            f"{what} split: cannot hold out {held_out:g} of {len(labels)} samples stratified by class ({error}); "
            "add images or change the split size"
        ) from None
    return torch.as_tensor(sorted(kept), dtype=torch.int64), torch.as_tensor(sorted(held), dtype=torch.int64)


def split_stratified(split: Split, held_out: float | int, seed: int, *, what: str) -> tuple[Split, Split]:
    """``split`` divided into (kept, held-out) parts by :func:`stratified_indices`."""
    kept, held = stratified_indices(split.y, held_out, seed, what=what)
    return split.take(kept), split.take(held)


def channel_stats(x: torch.Tensor | ImageArray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of NCHW images; std floored at :data:`STD_FLOOR`.

    An on-disk :class:`ImageArray` is reduced chunk by chunk in float64 (sums of ``x`` and ``x²``), so memory stays
    bounded by a chunk.
    """
    if isinstance(x, torch.Tensor):
        std, mean = torch.std_mean(x, dim=(0, 2, 3), correction=0)
        return tuple(mean.tolist()), tuple(max(s, STD_FLOOR) for s in std.tolist())
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for chunk in x.chunks():
        chunk = chunk.double()
        total += chunk.sum(dim=(0, 2, 3))
        squares += chunk.square().sum(dim=(0, 2, 3))
    count = max(1, len(x) * x.shape[2] * x.shape[3])
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(max(s, STD_FLOOR) for s in std.tolist())


def split_from_store(store: np.ndarray, y: np.ndarray) -> Split:
    """A :class:`Split` over a memory-mapped NCHW ``store`` (uint8 or float32 in [0, 1]) and its labels."""
    return Split(ImageArray(store), torch.from_numpy(np.asarray(y, dtype=np.int64)))
