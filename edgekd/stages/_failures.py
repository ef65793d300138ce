"""One failing artifact does not lose the run: a failure is recorded on the artifact, with its reason and exit code.

A stage that builds or measures several artifacts runs each under :func:`attempt`; what fails is kept in the manifest
with ``status: failed`` and a one-line ``reason``, skipped by later measurements, never selected, shown in the report,
and the run ends with the most severe exit code among its failures (1: a check failed, 2: bad input, 3: an internal
or runtime error), naming every failed artifact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from edgekd.errors import EdgekdError
from edgekd.pipeline.artifacts import Artifact
from edgekd.runtime import first_line

T = TypeVar("T")


def failure(exc: Exception) -> dict[str, Any]:
    """The one-line reason and exit code of an exception that failed one artifact."""
    if isinstance(exc, EdgekdError):
        return {"reason": first_line(exc), "exit_code": exc.exit_code}
    return {"reason": f"internal error: {type(exc).__name__}: {first_line(exc)}", "exit_code": 3}


def mark_failed(artifact: Artifact, failed: dict[str, Any]) -> Artifact:
    """``artifact`` with ``status: failed``, the reason, and the exit code in its info."""
    artifact.status = "failed"
    artifact.reason = failed["reason"]
    artifact.info["exit_code"] = failed["exit_code"]
    return artifact


def attempt(work: Callable[[], T], log: Callable[[str], None], label: str) -> tuple[T | None, dict[str, Any] | None]:
    """``(work(), None)``, or ``(None, failure)`` for the exception it raised (logged). Interrupts propagate."""
    try:
        return work(), None
    except Exception as exc:  # one artifact's failure, whatever it is, is recorded and the others go on
        failed = failure(exc)
        log(f"{label} failed: {failed['reason']}")
        return None, failed


def usable(artifacts: list[Artifact]) -> list[Artifact]:
    """The artifacts no earlier stage marked failed."""
    return [a for a in artifacts if a.status != "failed"]
