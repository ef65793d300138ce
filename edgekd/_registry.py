"""One generic registry, the single way to extend edgekd (models, losses, data sets, stages, runtimes, exporters).

Modelled on timm's registry: entries register themselves with a decorator where they are defined, duplicates are an
error, and an unknown name raises a :class:`~edgekd.errors.UserError` that suggests the closest names.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from edgekd.errors import UserError


class _Named(Protocol):
    """What can be registered without an explicit name: classes and functions."""

    @property
    def __name__(self) -> str: ...


T = TypeVar("T", bound=_Named)


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object with its name and free-form metadata (paper, description, family...)."""

    name: str
    obj: T
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Name → object table filled by :meth:`register`; :meth:`get` is the only way in."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str | None = None, /, **meta: Any) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` (default: ``obj.__name__``) with metadata ``meta``.

        ``name`` is positional-only, so ``meta`` may hold any key (``register(**family_meta)``).
        """

        def decorator(obj: T) -> T:
            key = name or obj.__name__
            self.add(key, obj, **meta)
            return obj

        return decorator

    def add(self, name: str, obj: T, **meta: Any) -> None:
        """Register ``obj`` under ``name``; registering the same name twice is a programming error."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = Entry(name, obj, dict(meta))

    def entry(self, name: str) -> Entry[T]:
        """The entry named ``name``, or a UserError listing the closest names."""
        try:
            return self._entries[name]
        except KeyError:
            raise UserError(self.unknown_message(name)) from None

    def get(self, name: str) -> T:
        """The object registered under ``name``."""
        return self.entry(name).obj

    def unknown_message(self, name: str) -> str:
        """One line saying ``name`` is unknown, with the closest names or the full list."""
        close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else f"known: {', '.join(self.names())}"
        return f"unknown {self.kind} {name!r}; {hint}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> Iterator[Entry[T]]:
        for name in self.names():
            yield self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
