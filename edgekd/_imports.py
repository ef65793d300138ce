"""Importing third-party code without its import-time noise reaching the user's terminal.

Libraries warn and log while they are imported about things an edgekd user cannot act on: ``torchao`` (imported by
``transformers`` and by ``nncf.strip``) logs ``Failed to load …/torchao/_C_mxfp8….so`` for every optional CUDA
kernel missing on a CPU-only machine, and its enum registrations make torch log a deprecation warning. Around such
an import only, :func:`quiet_import` records the warnings instead of showing them and holds back log records up to
WARNING; errors still show, and the import's exceptions propagate unchanged. Nothing is filtered outside that span,
so edgekd's own warnings and a library's messages while it runs are untouched. The recorded warnings are logged at
DEBUG on the ``edgekd.imports`` logger (visible to a library user who configures logging); the held-back log records
are dropped (``logging.disable``).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import warnings
from collections.abc import Iterator
from types import ModuleType

log = logging.getLogger("edgekd.imports")


@contextlib.contextmanager
def quiet_imports(what: str) -> Iterator[None]:
    """For the duration: warnings recorded (not shown), log records up to WARNING dropped; ``what`` names the import
    in the DEBUG summary."""
    previous = logging.root.manager.disable
    logging.disable(max(previous, logging.WARNING))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        logging.disable(previous)
    for warning in caught:
        log.debug("while importing %s: %s: %s", what, warning.category.__name__, warning.message)


def quiet_import(name: str) -> ModuleType:
    """``importlib.import_module(name)`` inside :func:`quiet_imports`."""
    with quiet_imports(name):
        return importlib.import_module(name)
