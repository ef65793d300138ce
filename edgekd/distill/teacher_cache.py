"""The teacher-output cache: the teacher's logits of every epoch, computed once and reused.

The trainer draws the batch order, the augmentation and the mixing of epoch ``e`` from a generator seeded by
``(data_seed, e)``, and the teacher runs in eval mode, so the teacher's logits of epoch ``e`` are a pure function of
the teacher's weights, the training data and its normalisation, ``data_seed``, the batch size (augmentation draws are
made batch by batch), the augmentation/mixing config and the numerics (mixed precision, memory format, torch
version). :func:`cache_key` hashes exactly these; the model-init seed is not among them, so students, chain steps and
an ablation over init seeds that share ``data_seed`` share the cache. Rows follow the epoch's sample order: row ``k``
holds the logits of the ``k``-th (augmented, mixed) sample the student sees in that epoch.

Layout: ``<root>/<key>/epoch-<e>.pt``, a dict ``{"key", "epoch", "logits"}`` (float32, ``(N, num_classes)``), written
atomically by rank 0 at the end of the epoch; an epoch interrupted half-way is simply recomputed. Only logit losses
can use the cache: feature losses need the teacher's intermediate features, hence the live teacher.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd._atomic import atomic_path
from edgekd.data import Split

#: Bumped whenever the file layout or the meaning of a row changes.
CACHE_FORMAT = 1


def module_digest(net: nn.Module) -> str:
    """SHA-256 of a network's class and state dict (names, dtypes, shapes, bytes): its identity as a teacher."""
    digest = hashlib.sha256(f"{type(net).__module__}.{type(net).__qualname__}".encode())
    for name, tensor in net.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def split_digest(split: Split) -> str:
    """SHA-256 of a split's images and labels."""
    digest = hashlib.sha256()
    for tensor in (split.x, split.y):
        digest.update(f"{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
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
    """The cached teacher logits of one key: ``root/key/epoch-<e>.pt``."""

    def __init__(self, root: Path, key: str, rows: int, num_classes: int) -> None:
        self.folder = Path(root) / key
        self.key = key
        self.shape = (rows, num_classes)

    def path(self, epoch: int) -> Path:
        """File of epoch ``epoch`` (0-based)."""
        return self.folder / f"epoch-{epoch}.pt"

    def load(self, epoch: int) -> torch.Tensor | None:
        """The logits of ``epoch``, or None when absent or not for this key and shape (they are recomputed)."""
        path = self.path(epoch)
        if not path.is_file():
            return None
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError):
            return None
        if not isinstance(stored, dict) or stored.get("key") != self.key or stored.get("epoch") != epoch:
            return None
        logits = stored.get("logits")
        if not isinstance(logits, torch.Tensor):
            return None
        return logits if tuple(logits.shape) == self.shape and logits.dtype == torch.float32 else None

    def save(self, epoch: int, logits: torch.Tensor) -> Path:
        """Store the logits of ``epoch`` atomically; returns the file."""
        if tuple(logits.shape) != self.shape:
            raise ValueError(f"teacher cache: expected logits of shape {self.shape}, got {tuple(logits.shape)}")
        path = self.path(epoch)
        with atomic_path(path) as tmp:
            torch.save({"key": self.key, "epoch": epoch, "logits": logits.detach().float().cpu()}, tmp)
        return path
