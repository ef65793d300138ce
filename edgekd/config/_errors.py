"""Turn a pydantic ValidationError into one line naming the file, the key path, what was given and what is allowed."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The schema class that owns the last key of ``loc`` (to list the allowed keys)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = _unwrap(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """The BaseModel inside ``X | None`` or ``list[X]``, else the annotation."""
    for arg in getattr(annotation, "__args__", ()) or ():
        inner = _unwrap(arg)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return annotation


def format_validation_error(error: ValidationError, model: type[BaseModel], source: str | Path) -> str:
    """One readable line for the first error (and a count of the others)."""
    errors = error.errors()
    first = errors[0]
    loc = tuple(first["loc"])
    path = ".".join(str(p) for p in loc)
    key = f"{path}: " if path else ""  # a check across the whole file names no key
    if first["type"] == "extra_forbidden":
        owner = _model_at(model, loc[:-1])
        allowed = sorted(owner.model_fields) if owner else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        message = f"unknown key; {hint}allowed: {', '.join(allowed)}"
    else:
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] not in {"missing", "value_error", "assertion_error"}:
            message += f" (got {first.get('input')!r})"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{source}: {key}{message}{more}"
