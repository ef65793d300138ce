"""Small built-in data sets: scikit-learn's ``digits`` and user arrays in an ``.npz`` file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from edgekd.data.bundle import RawData, Split, split_from_arrays, split_stratified
from edgekd.data.registry import DATASETS, DatasetParams
from edgekd.errors import UserError

TEST_SPLIT_SEED = 20_170_825
"""Seed of every carved test split: fixed, so the test split never changes with the recipe seed."""


class CarvedTestParams(DatasetParams):
    """Parameters of a data set without an official test split."""

    test_fraction: float = Field(
        0.2, gt=0, lt=1, description="share of each class held out as the test split (fixed seed, never the recipe's)"
    )


def carve_test(split: Split, fraction: float, dataset: str) -> tuple[Split, Split]:
    """(train, test): ``fraction`` of every class of ``split`` held out as test, with the fixed test seed."""
    return split_stratified(split, fraction, TEST_SPLIT_SEED, what=f"data set {dataset!r}: test")


def resolve_user_path(path: Path, data_dir: Path | None, *, key: str) -> Path:
    """``path`` if absolute; else ``data_dir / path`` when that exists, else ``path`` from the working folder."""
    candidates = [path] if path.is_absolute() or data_dir is None else [data_dir / path, path]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise UserError(f"data.params.{key}: {path} not found (looked at {', '.join(str(c) for c in candidates)})")


@DATASETS.register(
    "digits",
    params=CarvedTestParams,
    description="scikit-learn's 8x8 handwritten digits (1797 images, 1 channel, 16 grey levels, 10 classes)",
    citation="Alpaydin & Kaynak, Optical Recognition of Handwritten Digits, UCI Machine Learning Repository, 1998",
)
def load_digits(params: CarvedTestParams, *, data_dir: Path | None, seed: int) -> RawData:
    """Digits from :func:`sklearn.datasets.load_digits`, pixels 0..16 scaled by 1/16; test carved with a fixed seed."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = (digits.images[:, None, :, :] / 16.0).astype(np.float32)
    everything = split_from_arrays(images, digits.target, what="sklearn digits")
    train, test = carve_test(everything, params.test_fraction, "digits")
    return RawData(train, test, tuple(str(c) for c in digits.target_names), "sklearn")


class NpzParams(DatasetParams):
    """Parameters of the ``npz`` data set."""

    path: Path = Field(description="the .npz file (absolute, or relative to --data-dir or the working folder)")


def _to_nchw(x: np.ndarray, what: str) -> np.ndarray:
    """NHW, NCHW or NHWC images as NCHW: channels first when dim 1 has <= 4 entries, else last when it has."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[1] <= 4:
        return x
    if x.ndim == 4 and x.shape[3] <= 4:
        return x.transpose(0, 3, 1, 2)
    raise UserError(f"{what}: images must be NHW, NCHW or NHWC with at most 4 channels, got shape {x.shape}")


@DATASETS.register(
    "npz",
    params=NpzParams,
    description="your arrays in one .npz: x_train, y_train, x_test, y_test (uint8 or float in [0, 1]; NHW, NCHW or "
    "NHWC), optional class_names",
    citation=None,
)
def load_npz(params: NpzParams, *, data_dir: Path | None, seed: int) -> RawData:
    """Arrays from an ``.npz`` file (loaded without pickle); class names default to ``"0"``, ``"1"``, ..."""
    path = resolve_user_path(params.path, data_dir, key="path")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in archive.files]
            if missing:
                raise UserError(f"{path}: missing array(s) {', '.join(missing)} (has {', '.join(archive.files)})")
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: not a readable .npz file without pickled objects ({error})") from None
    splits = [
        split_from_arrays(_to_nchw(arrays[f"x_{p}"], f"{path}: x_{p}"), arrays[f"y_{p}"], what=f"{path}: {p}")
        for p in ("train", "test")
    ]
    if "class_names" in arrays:
        names = tuple(str(n) for n in arrays["class_names"].reshape(-1))
    else:
        top = max((int(s.y.max()) for s in splits if len(s)), default=-1)
        names = tuple(str(c) for c in range(top + 1))
    return RawData(splits[0], splits[1], names, str(path))
