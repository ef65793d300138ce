"""The teacher-output cache: the teacher's logits of every epoch, computed once and reused.

The trainer draws the batch order, the augmentation and the mixing of epoch ``e`` from a generator seeded by
``(data_seed, e)``, and the teacher runs in eval mode, so the teacher's logits of epoch ``e`` are a pure function of
the teacher's weights, the training data and its normalisation, ``data_seed``, the batch size (augmentation draws are
made batch by batch), the augmentation/mixing config and the numerics (mixed precision, memory format, torch
version). :func:`cache_key` hashes exactly these; the model-init seed is not among them, so students, chain steps and
an ablation over init seeds that share ``data_seed`` share the cache. Rows follow the epoch's sample order: row ``k``
holds the logits of the ``k``-th (augmented, mixed) sample the student sees in that epoch.

Layout: ``<root>/<key>/view-<v>.npy`` (an epoch's view is the epoch, or ``e mod augment_views``: epochs of one
view draw the same order, augmentation and mixing), float32 ``(N, num_classes)``, on disk rather than in memory: the
view being recorded is filled through a writable memory map (:meth:`TeacherCache.record`) and renamed into place when
the epoch ends (atomic; an epoch interrupted half-way is simply recomputed), a cached view is read memory-mapped
(:meth:`TeacherCache.load`), batch by batch. Only logit losses can use the cache: feature losses need the teacher's
intermediate features, hence the live teacher.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekd._atomic import atomic_path
from edgekd.data import Split
from edgekd.data.images import image_chunks

#: Bumped whenever the file layout or the meaning of a row changes.
CACHE_FORMAT = 3


def module_digest(net: nn.Module) -> str:
    """SHA-256 of a network's class and state dict (names, dtypes, shapes, bytes): its identity as a teacher."""
    digest = hashlib.sha256(f"{type(net).__module__}.{type(net).__qualname__}".encode())
    for name, tensor in net.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def split_digest(split: Split) -> str:
    """SHA-256 of a split's images (as float32, chunk by chunk for on-disk images) and labels."""
    digest = hashlib.sha256()
    for tensor, chunks in ((split.x, image_chunks(split.x)), (split.y, [split.y])):
        digest.update(f"{tensor.dtype}:{tuple(tensor.shape)}".encode())
        for chunk in chunks:
            digest.update(chunk.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_key(*, teacher: str, data: str, normalization: Any, data_seed: int, batch_size: int, augment: Any,
              numerics: Any) -> str:
    """SHA-256 of everything a cached epoch depends on (see the module docstring); all arguments JSON-able."""
    parts = {
        "format": CACHE_FORMAT, "teacher": teacher, "data": data, "normalization": normalization,
        "data_seed": data_seed, "batch_size": batch_size, "augment": augment, "numerics": numerics,
        "torch": torch.__version__,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class TeacherCache:
    """The cached teacher logits of one key: ``root/key/view-<v>.npy``."""

    def __init__(self, root: Path, key: str, rows: int, num_classes: int) -> None:
        self.folder = Path(root) / key
        self.key = key
        self.shape = (rows, num_classes)

    def path(self, view: int) -> Path:
        """File of view ``view`` (0-based)."""
        return self.folder / f"view-{view}.npy"

    def load(self, view: int) -> torch.Tensor | None:
        """The logits of ``view``, memory-mapped read-only, or None when absent or of another shape (recomputed)."""
        path = self.path(view)
        if not path.is_file():
            return None
        try:
            stored = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if stored.shape != self.shape or stored.dtype != np.float32:
            return None
        with warnings.catch_warnings():  # torch warns that the map is read-only; the trainer only reads it
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(stored)

    @contextmanager
    def record(self, view: int, *, keep: bool = True) -> Iterator[torch.Tensor]:
        """A zeroed ``(N, num_classes)`` float32 tensor on disk to fill with the logits of ``view``.

        With ``keep`` (rank 0) it becomes the cached view, atomically, when the block ends without error; without
        (the other ranks of a multi-process run, whose rows are summed into rank 0's) it is a scratch file, removed.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path(view)) if keep else _scratch(self.folder) as file:
            array = np.lib.format.open_memmap(file, mode="w+", dtype=np.float32, shape=self.shape)
            yield torch.from_numpy(array)
            array.flush()


@contextmanager
def _scratch(folder: Path) -> Iterator[Path]:
    """A temporary file path in ``folder``, removed afterwards."""
    with tempfile.TemporaryDirectory(dir=folder, prefix=".scratch-") as tmp:
        yield Path(tmp) / "logits.npy"
