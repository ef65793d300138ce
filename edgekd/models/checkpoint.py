"""Checkpoints in a safe format: plain containers and tensors only, readable with ``torch.load(weights_only=True)``.

An edgekd checkpoint is ``{"format": "edgekd-checkpoint/1", "spec": {"name", "kwargs"}, "state_dict": ...,
**extra}``: the spec says how to rebuild the model with :func:`edgekd.models.create`, so a checkpoint alone gives
back the model. Plain state_dict files (e.g. from other model zoos) are loaded into a model built by the caller with
:func:`load_weights`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd._atomic import atomic_write_bytes
from edgekd.errors import UserError
from edgekd.models.factory import create

FORMAT = "edgekd-checkpoint/1"
_RESERVED = ("format", "spec", "state_dict")
_SHOWN_KEYS = 3
_UNPICKLER_MARKER = "WeightsUnpickler error:"


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, *, spec: dict[str, Any], **extra: Any) -> None:
    """Write ``model``'s weights and its ``spec`` to ``path`` atomically (tensors moved to the CPU).

    Args:
        path: output file, conventionally ``*.pt``.
        model: the model whose ``state_dict`` is saved.
        spec: ``{"name": str, "kwargs": dict}``, the arguments of :func:`create` that rebuild ``model``.
        **extra: plain Python / tensor data to keep alongside (epoch, metrics, ...).
    """
    if not _is_spec(spec):
        raise ValueError(f"spec must be {{'name': str, 'kwargs': dict}}, got {spec!r}")
    clash = sorted(set(extra) & set(_RESERVED))
    if clash:
        raise ValueError(f"extra checkpoint keys {clash} clash with the reserved keys {list(_RESERVED)}")
    state = {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "spec": {"name": spec["name"], "kwargs": dict(spec["kwargs"])}, "state_dict": state}
    payload.update(extra)
    save_atomically(path, payload)


def save_atomically(path: str | os.PathLike[str], obj: Any) -> None:
    """``torch.save(obj)`` to ``path`` atomically; the bytes depend on ``obj`` only (torch names the archive's
    top folder after the file it writes to, so the archive is built in memory, never under a temporary name)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an edgekd checkpoint written by :func:`save_checkpoint` (``weights_only=True``, tensors on the CPU).

    Raises:
        UserError: the file is missing, unreadable, unsafe, or not an edgekd checkpoint.
    """
    return _validated(_read(path), str(path))


def model_from_checkpoint(checkpoint: str | os.PathLike[str] | Mapping[str, Any]) -> nn.Module:
    """Rebuild the model of an edgekd checkpoint (a path, or a dict from :func:`load_checkpoint`), weights loaded."""
    if isinstance(checkpoint, Mapping):
        payload, source = _validated(checkpoint, "checkpoint"), "checkpoint"
    else:
        payload, source = load_checkpoint(checkpoint), str(checkpoint)
    spec = payload["spec"]
    try:
        model = create(spec["name"], **spec["kwargs"])
    except UserError as exc:
        raise UserError(f"{source}: {exc}") from exc
    _load_strict(model, payload["state_dict"], source)
    return model


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load weights from ``path`` into ``model`` strictly and return it.

    ``path`` holds a plain state_dict, an edgekd checkpoint, or a training checkpoint dict whose ``"state_dict"`` or
    ``"model"`` entry is the state_dict (as TAKD / RepDistiller save them).

    Raises:
        UserError: unreadable file, no state_dict in it, or keys / shapes that do not match ``model`` (the first few
            missing and unexpected keys are listed).
    """
    payload = _read(path)
    state = payload
    if not _is_state_dict(payload) and isinstance(payload, dict):
        state = next((payload[k] for k in ("state_dict", "model") if _is_state_dict(payload.get(k))), None)
    if not _is_state_dict(state):
        raise UserError(f"{path}: no state_dict found (expected a mapping of parameter names to tensors)")
    _load_strict(model, state, str(path))
    return model


def _read(path: str | os.PathLike[str]) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with one-line errors naming ``path``."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"{path}: checkpoint file not found")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types (pickle, zip, EOF, runtime) for a bad or unsafe file
        raise UserError(f"{path}: not a readable weights-only torch file ({_load_error_reason(exc)})") from exc


def _validated(payload: Any, source: str) -> dict[str, Any]:
    """``payload`` if it is an edgekd checkpoint (format, spec and state_dict well formed), else a UserError."""
    if not isinstance(payload, Mapping) or payload.get("format") != FORMAT:
        raise UserError(
            f"{source}: not an edgekd checkpoint (expected format {FORMAT!r}); for a plain state_dict give the "
            "model name and kwargs and load it with load_weights"
        )
    if not _is_spec(payload.get("spec")):
        raise UserError(f"{source}: key 'spec' must be {{'name': str, 'kwargs': dict}}, got {payload.get('spec')!r}")
    if not _is_state_dict(payload.get("state_dict")):
        raise UserError(f"{source}: key 'state_dict' must map parameter names to tensors")
    return dict(payload)


def _load_error_reason(exc: Exception) -> str:
    """The gist of a torch.load failure in one line (its weights-only errors span a paragraph)."""
    text = str(exc)
    text = text.split(_UNPICKLER_MARKER, 1)[1] if _UNPICKLER_MARKER in text else text
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return line.split(". ", 1)[0].rstrip(".") or type(exc).__name__


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _is_spec(spec: Any) -> bool:
    return isinstance(spec, Mapping) and isinstance(spec.get("name"), str) and isinstance(spec.get("kwargs"), Mapping)


def _load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(state, strict=True)`` with a one-line UserError listing what does not match."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    resized = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = [
        f"{label} ({len(keys)}): {', '.join(keys[:_SHOWN_KEYS])}{', ...' if len(keys) > _SHOWN_KEYS else ''}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", resized))
        if keys
    ]
    if problems:
        raise UserError(f"{source}: weights do not match {type(model).__name__}: {'; '.join(problems)}")
    model.load_state_dict(state, strict=True)
