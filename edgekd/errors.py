"""Errors that the command line turns into exit codes (see DESIGN.md: 1 budget/regression, 2 bad input)."""

from __future__ import annotations


class EdgekdError(Exception):
    """Base class of every error edgekd raises on purpose."""

    exit_code = 3


class UserError(EdgekdError):
    """Bad input: a missing or invalid file, an unknown name, a wrong type, a data set not found (exit 2).

    The message is one line that names the file, the key and what is expected.
    """

    exit_code = 2


class ConfigError(UserError):
    """A recipe or device-profile mistake that a stage's check found before any work (exit 2). ``where`` is
    ``recipe`` or ``device``; the command line prefixes the file, so the line names file, key and what is wrong."""

    def __init__(self, where: str, key: str, message: str) -> None:
        self.where, self.key, self.message = where, key, message
        super().__init__(f"{key}: {message}")


class RuntimeFailure(EdgekdError):
    """A runtime crashed or ran out of memory on inputs edgekd had already validated (exit 3: an internal error,
    not bad input). The message carries the runtime's own first line."""

    exit_code = 3


class BudgetError(EdgekdError):
    """A budget or regression check failed (exit 1)."""

    exit_code = 1


class ParityError(EdgekdError):
    """An exported artifact disagrees with the torch model beyond the stated tolerance (exit 1)."""

    exit_code = 1


class ArtifactsFailed(EdgekdError):
    """Artifacts failed a check or a runtime while the rest of the run went on. Exit 1, or the most severe code among
    the failures (2: bad input, 3: an internal or runtime error); the message names every failed artifact."""

    def __init__(self, failures: list[tuple[str, str, int]]) -> None:
        self.exit_code = max(code for _, _, code in failures)
        named = "; ".join(f"{name} ({reason})" for name, reason, _ in failures)
        super().__init__(f"{len(failures)} artifact(s) failed: {named}")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (native runtimes raise multi-line messages), for a UserError."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
