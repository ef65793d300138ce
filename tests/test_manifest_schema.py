"""The typed manifest: the published JSON Schema is the models' own, and records of other edgekd versions read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekd.capabilities import FORMAT_SUFFIXES
from edgekd.errors import UserError
from edgekd.pipeline.artifacts import Artifact
from edgekd.pipeline.manifest import (
    SCHEMA_FILE,
    Manifest,
    read_manifest,
    read_stage_record,
    schema_text,
    write_manifest,
)

ROOT = Path(__file__).resolve().parents[1]

ARTIFACT = {"name": "student-onnx-fp32", "path": "export/student.onnx", "format": "onnx", "precision": "fp32",
            "runtime": "onnxruntime", "role": "student",
            "input": {"shape": [-1, 1, 8, 8], "dtype": "float32", "range": [0.0, 1.0], "layout": "NCHW"},
            "bytes": 10, "sha256": "ab" * 32, "metrics": {"accuracy": 0.9}}
#: a manifest as an edgekd before `provenance.processes`, `recipe_file`, `files` and `status` wrote it
OLD = {"recipe": "quickstart", "device": "x86-cpu", "edgekd_version": "0.1.0", "created": "2026-01-01T00:00:00+00:00",
       "stages": [{"name": "distill", "status": "done", "seconds": 1.5}], "artifacts": [ARTIFACT],
       "selected": "student-onnx-fp32"}


def test_published_schema_is_the_models_schema() -> None:
    committed = (ROOT / SCHEMA_FILE).read_text(encoding="utf-8")
    assert committed == schema_text(), (
        f"{SCHEMA_FILE} is stale: regenerate it with python -c 'from pathlib import Path; "
        "from edgekd.pipeline.manifest import write_schema; write_schema(Path.cwd())'")


def test_schema_states_the_design_contract() -> None:
    schema = json.loads((ROOT / SCHEMA_FILE).read_text(encoding="utf-8"))
    defs = schema["$defs"]
    assert {"recipe", "device", "edgekd_version"} <= set(schema["required"])
    assert defs["StageEntry"]["properties"]["status"]["enum"] == ["done", "cached", "failed", "skipped"]
    formats = defs["Artifact"]["properties"]["format"]["enum"]
    assert formats[:4] == ["torch", "onnx", "openvino", "tensorrt"]  # then any further runtime's, in table order
    assert set(formats) == set(FORMAT_SUFFIXES.values())
    assert set(defs["ArtifactFile"]["required"]) == {"path", "bytes", "sha256"}


def test_older_manifest_reads_with_defaults(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps(OLD))
    manifest = read_manifest(tmp_path)
    art = manifest.artifact("student-onnx-fp32")
    assert art is not None and art.files == [] and art.status == "ok" and art.metrics == {"accuracy": 0.9}
    assert manifest.provenance.processes == 1 and manifest.recipe_file == ""
    assert manifest.stage("distill") is not None and manifest.stage("bench") is None


def test_unknown_fields_survive_a_round_trip(tmp_path: Path) -> None:
    newer = {**OLD, "energy_source": "rapl", "artifacts": [{**ARTIFACT, "signature": "x"}]}
    write_manifest(tmp_path, newer)
    written = json.loads((tmp_path / "manifest.json").read_text())
    assert written["energy_source"] == "rapl" and written["artifacts"][0]["signature"] == "x"
    assert Artifact.from_dict(written["artifacts"][0]).to_dict()["signature"] == "x"


def test_damaged_manifest_is_one_line_naming_the_key(tmp_path: Path) -> None:
    bad = {**OLD, "stages": [{"name": "distill", "status": "finished", "seconds": 1.0}]}
    (tmp_path / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(UserError, match=r"manifest.json: stages\.0\.status: "):
        read_manifest(tmp_path)
    with pytest.raises(ValueError):
        write_manifest(tmp_path, bad)


def test_a_record_that_is_not_a_stage_record_reads_as_never_written(tmp_path: Path) -> None:
    path = tmp_path / "stage.json"
    path.write_text(json.dumps({"name": "distill"}))
    assert read_stage_record(path) is None
    assert read_stage_record(tmp_path / "missing.json") is None


def test_manifest_model_matches_the_schema_file_fields() -> None:
    schema = json.loads((ROOT / SCHEMA_FILE).read_text(encoding="utf-8"))
    assert set(schema["properties"]) == set(Manifest.model_fields)
