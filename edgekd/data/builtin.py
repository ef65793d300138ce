"""Built-in data sets: scikit-learn's ``digits`` (in memory) and user arrays in an ``.npz`` file (memory-mapped)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
from pydantic import Field

from edgekd.data._idx import cache_dir
from edgekd.data.bundle import RawData, Split, split_from_arrays, split_from_store, split_stratified
from edgekd.data.images import open_store, write_store
from edgekd.data.registry import DATASETS, DatasetParams
from edgekd.errors import UserError

TEST_SPLIT_SEED = 20_170_825
"""Seed of every carved test split: fixed, so the test split never changes with the recipe seed."""
NPZ_CACHE_FORMAT = 1
"""Bumped whenever the layout of the unpacked ``.npz`` images changes."""


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
    cache_dir: Path | None = Field(
        None, description="where the images are unpacked for memory mapping (default ~/.cache/edgekd/npz)"
    )


def _nchw_axes(shape: tuple[int, ...], what: str) -> tuple[int, ...] | None:
    """Axes that turn NHW, NCHW or NHWC images into NCHW (None: add a channel axis to NHW).

    Channels first when dim 1 has <= 4 entries, else last when it has.
    """
    if len(shape) == 3:
        return None
    if len(shape) == 4 and shape[1] <= 4:
        return (0, 1, 2, 3)
    if len(shape) == 4 and shape[3] <= 4:
        return (0, 3, 1, 2)
    raise UserError(f"{what}: images must be NHW, NCHW or NHWC with at most 4 channels, got shape {shape}")


def _unpack_images(archive: zipfile.ZipFile, member: str, target: Path, what: str) -> None:
    """Copy the image array ``member`` of an ``.npz`` into the NCHW ``.npy`` store ``target``, a few rows at a time.

    uint8 stays uint8; floats become float32 and must lie in [0, 1]. Compressed and stored archives alike.
    """
    with archive.open(member) as handle:
        version = np.lib.format.read_magic(handle)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(handle)
        if dtype != np.uint8 and not np.issubdtype(dtype, np.floating):
            raise UserError(f"{what}: images must be uint8 (0..255) or float in [0, 1], got {dtype}")
        axes = _nchw_axes(shape, what)
        rows = np.lib.format.read_array(handle, allow_pickle=False) if fortran else None
        nchw = shape[:1] + ((1, *shape[1:]) if axes is None else tuple(shape[a] for a in axes[1:]))
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        step = max(1, (16 << 20) // max(1, row_bytes))
        low, high = np.inf, -np.inf
        with write_store(target, nchw, np.uint8 if dtype == np.uint8 else np.float32) as out:
            for start in range(0, shape[0], step):
                count = min(step, shape[0] - start)
                if rows is not None:
                    chunk = rows[start : start + count]
                else:
                    chunk = np.frombuffer(handle.read(count * row_bytes), dtype=dtype).reshape(count, *shape[1:])
                chunk = chunk[:, None] if axes is None else chunk.transpose(axes)
                if dtype != np.uint8 and chunk.size:
                    low, high = min(low, float(chunk.min())), max(high, float(chunk.max()))
                out[start : start + count] = chunk
            if not (low >= 0 and high <= 1) and low != np.inf:
                raise UserError(f"{what}: float images must be in [0, 1], got {low:g}..{high:g}")


@DATASETS.register(
    "npz",
    params=NpzParams,
    description="your arrays in one .npz: x_train, y_train, x_test, y_test (uint8 or float in [0, 1]; NHW, NCHW or "
    "NHWC), optional class_names; images are memory-mapped from an unpacked copy",
    citation=None,
)
def load_npz(params: NpzParams, *, data_dir: Path | None, seed: int) -> RawData:
    """Arrays from an ``.npz`` file (without pickle); images unpacked once into memory-mapped ``.npy`` stores keyed
    by the file's path, size and modification time; class names default to ``"0"``, ``"1"``, ..."""
    path = resolve_user_path(params.path, data_dir, key="path")
    stat = path.stat()
    digest = hashlib.sha256(f"{NPZ_CACHE_FORMAT}\0{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    folder = (params.cache_dir or cache_dir("npz")) / digest.hexdigest()
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in archive.files]
            if missing:
                raise UserError(f"{path}: missing array(s) {', '.join(missing)} (has {', '.join(archive.files)})")
            small = {key: archive[key] for key in archive.files if not key.startswith("x_")}
        splits = []
        with zipfile.ZipFile(path) as zipped:
            for part in ("train", "test"):
                store = folder / f"x_{part}.npy"
                if not store.is_file():
                    _unpack_images(zipped, f"x_{part}.npy", store, f"{path}: x_{part}")
                images, labels = open_store(store), small[f"y_{part}"]
                if labels.ndim != 1 or len(labels) != len(images) or not (
                        np.issubdtype(labels.dtype, np.integer) or len(labels) == 0):
                    raise UserError(f"{path}: {part}: labels must be {len(images)} integers (one per image), got "
                                    f"{labels.dtype} {labels.shape}")
                splits.append(split_from_store(images, labels))
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise UserError(f"{path}: not a readable .npz file without pickled objects ({error})") from None
    if "class_names" in small:
        names = tuple(str(n) for n in small["class_names"].reshape(-1))
    else:
        top = max((int(s.y.max()) for s in splits if len(s)), default=-1)
        names = tuple(str(c) for c in range(top + 1))
    return RawData(splits[0], splits[1], names, str(path))
