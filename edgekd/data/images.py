"""Images kept on disk: a uint8 (or float32) NCHW array, memory-mapped, served as float32 batches in [0, 1].

A data set larger than memory is decoded once into a ``.npy`` file (:func:`write_store`, atomic) and opened with
``np.load(mmap_mode="r")``; :class:`ImageArray` is the tensor-like view a :class:`~edgekd.data.Split` holds. Indexing
it with an int, a slice or an index tensor reads only those rows and converts them (``uint8 / 255``, the same
arithmetic as the in-memory loaders), so memory follows the batch, not the data set; ``take``-style row selection
(:meth:`ImageArray.index_select`) is itself lazy, so seeded splits and subsets cost an index array. Whole-array
uses (``numpy()``, ``torch.equal``/``torch.cat`` through ``__torch_function__``, iteration) materialise what they
touch, for the small splits that evaluation and tests read whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd._atomic import atomic_path

ROWS_PER_CHUNK = 256
"""Rows converted at a time by the whole-array operations (statistics, hashing, iteration)."""


class ImageArray:
    """Rows ``rows`` (default: all) of an NCHW ``store`` (uint8 0..255 or float32 in [0, 1]) as float32 in [0, 1].

    Tensor-like where the pipeline needs it: ``len``, ``shape``, ``dtype``, ``dim()``, ``x[int | slice | index]``
    (a new float32 tensor; further indices in a tuple apply to it), ``index_select(0, index)`` (a lazy view),
    ``numpy()``, iteration over images, and torch functions (their ImageArray arguments are materialised).
    """

    dtype = torch.float32

    def __init__(self, store: np.ndarray, rows: np.ndarray | None = None) -> None:
        if store.ndim != 4 or store.dtype not in (np.uint8, np.float32):
            raise ValueError(f"ImageArray: expected a uint8 or float32 NCHW store, got {store.dtype} {store.shape}")
        self.store = store
        self.rows = rows

    # -- shape ----------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.store) if self.rows is None else len(self.rows)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.store.shape[1:]))

    def dim(self) -> int:
        return 4

    @property
    def nbytes(self) -> int:
        """Bytes of the float32 tensor this view stands for (what materialising it would cost)."""
        return 4 * int(np.prod(self.shape))

    # -- rows -----------------------------------------------------------------------------------------------------
    def index_select(self, dim: int, index: torch.Tensor) -> ImageArray:
        """The rows at ``index`` (1-D integers), in that order, as another lazy view (``dim`` must be 0)."""
        if dim != 0:
            raise ValueError("ImageArray.index_select selects rows only (dim=0)")
        return ImageArray(self.store, self._index_rows(index))

    def _store_rows(self, key: Any) -> np.ndarray | slice:
        """Rows of the store selected by ``key`` (a slice stays a slice when it can, for one contiguous read)."""
        if isinstance(key, slice):
            if self.rows is None and key.step in (None, 1):
                start, stop, _ = key.indices(len(self))
                return slice(start, max(start, stop))
            key = np.arange(len(self))[key]
        return self._index_rows(key)

    def _index_rows(self, key: Any) -> np.ndarray:
        """Rows of the store at the view positions ``key`` (integers, an array or a tensor; negatives count back)."""
        index = np.asarray(key.cpu().numpy() if isinstance(key, torch.Tensor) else key, dtype=np.int64)
        if index.size and not (-len(self) <= index.min() and index.max() < len(self)):
            raise IndexError(f"index out of range for {len(self)} images")
        index = np.where(index < 0, index + len(self), index)
        return index if self.rows is None else self.rows[index]

    def __getitem__(self, key: Any) -> torch.Tensor:
        head, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if isinstance(head, (int, np.integer)):
            image = self[[int(head)]][0]
            return image[rest] if rest else image
        batch = _as_float(self.store[self._store_rows(head)])
        return batch[(slice(None), *rest)] if rest else batch

    def __iter__(self) -> Iterator[torch.Tensor]:
        for start in range(0, len(self), ROWS_PER_CHUNK):
            yield from self[start : start + ROWS_PER_CHUNK]

    def chunks(self) -> Iterator[torch.Tensor]:
        """Consecutive float32 batches of at most :data:`ROWS_PER_CHUNK` rows covering the view in order."""
        for start in range(0, len(self), ROWS_PER_CHUNK):
            yield self[start : start + ROWS_PER_CHUNK]

    def numpy(self) -> np.ndarray:
        """The whole view as one float32 array (materialised)."""
        return self[:].numpy()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = self.numpy()
        return array if dtype is None else array.astype(dtype)

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        return func(*_materialised(args), **_materialised(kwargs or {}))

    def __repr__(self) -> str:
        return f"ImageArray({tuple(self.shape)}, stored as {self.store.dtype})"


def _as_float(batch: np.ndarray) -> torch.Tensor:
    """A store batch as a new float32 tensor in [0, 1] (uint8 divided by 255, as ``split_from_arrays`` does)."""
    if batch.dtype == np.uint8:
        return torch.from_numpy(np.array(batch)).float().div_(255.0)
    return torch.from_numpy(np.array(batch, dtype=np.float32))


def _materialised(value: Any) -> Any:
    if isinstance(value, ImageArray):
        return value[:]
    if isinstance(value, (list, tuple)):
        return type(value)(_materialised(v) for v in value)
    if isinstance(value, dict):
        return {k: _materialised(v) for k, v in value.items()}
    return value


def image_chunks(x: torch.Tensor | ImageArray) -> Iterator[torch.Tensor]:
    """Consecutive row batches of ``x`` (an in-memory tensor yields itself whole)."""
    if isinstance(x, ImageArray):
        yield from x.chunks()
    else:
        yield x


@contextmanager
def write_store(path: Path, shape: tuple[int, ...], dtype: np.dtype | type) -> Iterator[np.memmap]:
    """``with write_store(path, shape, dtype) as out: out[a:b] = rows`` fills a new ``.npy`` file through a
    writable memory map; it appears at ``path`` (atomically) only when the block succeeds."""
    with atomic_path(path) as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.dtype(dtype), shape=tuple(int(s) for s in shape))
        yield array
        array.flush()


def open_store(path: Path) -> np.ndarray:
    """A ``.npy`` store, memory-mapped read-only."""
    return np.load(path, mmap_mode="r", allow_pickle=False)
