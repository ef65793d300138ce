"""Reading run-directory records (manifest.json, stage.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgekd.errors import UserError


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON record, or None if it does not exist (or is unreadable: it is then treated as never written)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def load_manifest(run_dir: Path) -> dict[str, Any]:
    """The manifest of a run directory, or a UserError saying the folder is not a run."""
    manifest = read_json(run_dir / "manifest.json")
    if manifest is None:
        raise UserError(f"{run_dir}: no manifest.json here; is this an edgekd run directory?")
    return manifest
