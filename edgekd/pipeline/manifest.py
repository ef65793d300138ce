"""The run directory's records, typed: ``manifest.json`` (:class:`Manifest`) and each stage's ``stage.json``
(:class:`StageRecord`), read and written only through this module.

The manifest contract is DESIGN.md's; its JSON Schema, generated from these models, is published as
``schemas/manifest.schema.json`` (:func:`manifest_schema`; a test keeps the file equal to the models). Records are
read across edgekd versions: unknown fields are kept, missing ones take their defaults (:class:`Record`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from edgekd._atomic import atomic_write_json, atomic_write_text
from edgekd.errors import UserError
from edgekd.pipeline.artifacts import Artifact, ArtifactFile, Record

MANIFEST = "manifest.json"
SCHEMA_ID = "https://github.com/edgekd/edgekd/schemas/manifest.schema.json"
#: the published schema, relative to the repository root
SCHEMA_FILE = Path("schemas") / "manifest.schema.json"

StageStatus = Literal["done", "cached", "failed", "skipped"]


class StageEntry(Record):
    """One stage of the run as the manifest lists it: what happened, how long it took, why it ran (or did not)."""

    name: str
    status: StageStatus
    seconds: float
    reason: str = ""
    info: dict[str, Any] = Field(default_factory=dict, description="what the stage reported (its record's info)")
    error: str | None = Field(None, description="the exception of a failed stage")


class Provenance(Record):
    """Where the run ran: library versions, host, edgekd commit, number of processes."""

    libraries: dict[str, str | None] = Field(default_factory=dict)
    host: dict[str, Any] = Field(default_factory=dict)
    git_commit: str | None = None
    processes: int = 1


class Manifest(Record):
    """``manifest.json``: the recipe and device, every stage, every artifact with its metrics, the selected one."""

    recipe: str
    recipe_file: str = ""
    device: str
    edgekd_version: str
    created: str
    updated: str = ""
    smoke: bool = False
    seed: int = 0
    overrides: list[str] = Field(default_factory=list)
    provenance: Provenance = Field(default_factory=Provenance)
    preflight: dict[str, Any] | None = Field(None, description="what the pre-flight found on the target before any "
                                             "stage: target, python, numpy, runtimes (name → version)")
    budgets: dict[str, Any] = Field(default_factory=dict, description="the device's budgets")
    current_stage: str | None = Field(None, description="the stage running now (null between stages)")
    stages: list[StageEntry] = Field(default_factory=list)
    artifacts: list[Artifact] = Field(default_factory=list)
    selected: str | None = Field(None, description="the artifact chosen for the device")
    selection: dict[str, Any] | None = Field(None, description="how it was chosen: objective, candidates, reason")

    def artifact(self, name: str) -> Artifact | None:
        """An artifact by name."""
        return next((a for a in self.artifacts if a.name == name), None)

    def stage(self, name: str) -> StageEntry | None:
        """The entry of a stage by name."""
        return next((s for s in self.stages if s.name == name), None)


class OutputFile(Record):
    """A non-artifact output of a stage (a report, a plot), described like an artifact's files."""

    path: str
    bytes: int
    sha256: str
    combined_sha256: str = ""
    files: list[ArtifactFile] = Field(default_factory=list)


class StageRecord(Record):
    """``<stage>/stage.json``: a finished stage's outputs and the parts of its cache key."""

    name: str
    status: Literal["done"] = "done"
    key: str
    key_parts: dict[str, Any]
    seconds: float
    finished: str
    info: dict[str, Any] = Field(default_factory=dict)
    outputs_digest: str
    artifacts: list[Artifact] = Field(default_factory=list)
    metrics: dict[str, dict[str, Any]] = Field(default_factory=dict)
    failures: dict[str, dict[str, Any]] = Field(default_factory=dict)
    manifest: dict[str, Any] = Field(default_factory=dict)
    files: list[OutputFile] = Field(default_factory=list)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON record, or None if it does not exist (or is unreadable: it is then treated as never written)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def checked_manifest(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` validated against :class:`Manifest`, as the JSON written to ``manifest.json`` (fields ``data`` left
    out stay out: readers fill their defaults)."""
    return Manifest.model_validate(data).model_dump(mode="json", exclude_unset=True)


def write_manifest(run_dir: Path, data: dict[str, Any]) -> None:
    """Validate and write ``manifest.json`` atomically (valid JSON at every instant)."""
    atomic_write_json(run_dir / MANIFEST, checked_manifest(data))


def read_manifest(run_dir: Path) -> Manifest:
    """The typed manifest of a run directory; a UserError when the folder is not a run or its manifest is damaged."""
    data = read_json(run_dir / MANIFEST)
    if data is None:
        raise UserError(f"{run_dir}: no manifest.json here; is this an edgekd run directory?")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UserError(f"{run_dir / MANIFEST}: {where}: {first['msg']}") from None


def load_manifest(run_dir: Path) -> dict[str, Any]:
    """The manifest of a run directory as JSON data (validated by :func:`read_manifest`)."""
    return read_manifest(run_dir).model_dump(mode="json")


def write_stage_record(path: Path, data: dict[str, Any]) -> None:
    """Validate and write a stage record atomically."""
    atomic_write_json(path, StageRecord.model_validate(data).model_dump(mode="json", exclude_unset=True))


def read_stage_record(path: Path) -> dict[str, Any] | None:
    """A stage record, or None when it is missing, unreadable or not a stage record (the stage then re-runs)."""
    data = read_json(path)
    if data is None:
        return None
    try:
        return StageRecord.model_validate(data).model_dump(mode="json")
    except ValidationError:
        return None


def manifest_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``manifest.json``, generated from :class:`Manifest`."""
    schema = Manifest.model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def schema_text() -> str:
    """:func:`manifest_schema` as the text of the published file."""
    return json.dumps(manifest_schema(), indent=2, sort_keys=True) + "\n"


def write_schema(root: Path) -> Path:
    """Regenerate the published schema file under the repository ``root``."""
    path = root / SCHEMA_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, schema_text())
    return path
