"""Machinery shared by the exporters."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from torch import nn


@contextmanager
def preserved_mode(net: nn.Module) -> Iterator[None]:
    """Restore ``net``'s train/eval mode on exit (:func:`~edgekd.runtime.deployable` puts it in eval mode)."""
    was_training = net.training
    try:
        yield
    finally:
        net.train(was_training)


@contextmanager
def atomic_files(path: Path, *siblings: str) -> Iterator[Path]:
    """Yield a path ``<tmpdir>/<path.name>`` for a writer that makes ``path`` plus files with the suffixes
    ``siblings`` (an OpenVINO IR is ``.xml`` + ``.bin``); on success move the siblings, then ``path``, into place.

    Moving ``path`` last means a reader that finds ``path`` finds its siblings complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        staged = tmpdir / path.name
        yield staged
        for suffix in siblings:
            os.replace(staged.with_suffix(suffix), path.with_suffix(suffix))
        os.replace(staged, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
