"""``edgekd bench ARTIFACT --device D``: one artifact measured outside a run, optionally beside ``benchmark_app``.

The artifact's runtime and precision come from the manifest of the run folder it sits in, when there is one;
otherwise from its suffix (``.xml`` OpenVINO, ``.onnx`` ONNX Runtime, ``.pt`` torch) and its graph (Q/DQ or
FakeQuantize nodes: ``int8``; else ``fp32``), unless given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgekd.errors import UserError
from edgekd.runtime import artifact_format

DEFAULT_RUNTIME = {"openvino": "openvino", "onnx": "onnxruntime", "torch": "torch", "tensorrt": "tensorrt"}


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


def _graph_precision(path: Path, fmt: str) -> str:
    if fmt == "openvino":
        text = path.read_text(errors="replace")
        return "int8" if 'type="FakeQuantize"' in text else ("fp16" if 'element_type="f16"' in text else "fp32")
    if fmt == "onnx":
        from edgekd.runtimes.onnxruntime.runner import graph_precision

        return {"int8+f32": "int8", "f16": "fp16"}.get(graph_precision(path), "fp32")
    return "fp32"


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
    return {"runtime": runtime or DEFAULT_RUNTIME[fmt], "precision": precision or _graph_precision(path, fmt),
            "sample_shape": None, "source": "file suffix and graph"}
