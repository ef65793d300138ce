"""``edgekd bench ARTIFACT --device D``: one artifact measured outside a run, optionally beside ``benchmark_app``.

The artifact's runtime and precision come from the manifest of the run folder it sits in, when there is one;
otherwise from its suffix (the first runtime in the capability table that opens its format) and its graph (the
runtime package's ``bench.artifact_precision``: e.g. Q/DQ or FakeQuantize nodes are ``int8``), unless given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgekd.capabilities import default_runtime
from edgekd.errors import UserError
from edgekd.runtime import artifact_format
from edgekd.runtimes import runtime_part


def _from_manifest(path: Path) -> dict[str, Any] | None:
    for folder in list(path.resolve().parents)[:4]:
        manifest = folder / "manifest.json"
        if manifest.is_file():
            try:
                artifacts = json.loads(manifest.read_text()).get("artifacts", [])
            except (OSError, json.JSONDecodeError):
                return None
            for art in artifacts:
                if (folder / art.get("path", "")).resolve() == path.resolve():
                    return art
            return None
    return None


def describe_artifact(path: Path, runtime: str | None = None, precision: str | None = None) -> dict[str, Any]:
    """``{runtime, precision, sample_shape, source}`` of ``path``: what edgekd will measure it as, and why."""
    if not path.exists():
        raise UserError(f"{path}: artifact not found")
    fmt = artifact_format(path)
    record = _from_manifest(path)
    if record is not None:
        return {"runtime": runtime or record["runtime"], "precision": precision or record["precision"],
                "sample_shape": record.get("input", {}).get("shape", [None])[1:] or None,
                "source": f"manifest entry {record['name']}"}
    reader = runtime_part(default_runtime(fmt), "bench")  # the precision as the format's own runtime reads it
    return {"runtime": runtime or default_runtime(fmt), "precision": precision or reader.artifact_precision(path),
            "sample_shape": None, "source": "file suffix and graph"}
