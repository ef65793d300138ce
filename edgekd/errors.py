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


class BudgetError(EdgekdError):
    """A budget or regression check failed (exit 1)."""

    exit_code = 1


class ParityError(EdgekdError):
    """An exported artifact disagrees with the torch model beyond the stated tolerance (exit 1)."""

    exit_code = 1
