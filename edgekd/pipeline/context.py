"""What a running stage sees: its folder, the recipe and device, earlier artifacts and records, data, a console.

Everything a stage reads from earlier stages goes through its context, which notes a fingerprint of each read
(:func:`fingerprint`); the runner puts those into the stage's cache key, so a stage re-runs exactly when something it
read changed — including a stage inserted before it that replaces or adds what it reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from edgekd.config import Device, Recipe
from edgekd.pipeline.artifacts import Artifact
from edgekd.pipeline.hashing import sha256_json

if TYPE_CHECKING:
    from edgekd.data import DataBundle

#: sizes of the data subsets a smoke run uses (train, val, test)
SMOKE_SUBSET = (512, 256, 512)

#: read keys: ``artifact:NAME`` (one artifact, or its absence), ``artifacts`` (the whole list), ``record:STAGE``
#: (one earlier stage's record), ``records`` (all of them)
ALL_ARTIFACTS, ALL_RECORDS = "artifacts", "records"


def record_digest(record: Mapping[str, Any]) -> str:
    """What a reader of a stage record sees: its outputs and its ``info`` (a stage whose only output is its info,
    like the ablation's table, changes its readers' keys when the info changes)."""
    return sha256_json([record["outputs_digest"], record.get("info")])


def fingerprint(key: str, artifacts: Mapping[str, dict[str, Any]], records: Mapping[str, dict[str, Any]]
                ) -> str | None:
    """The digest of what read ``key`` sees in ``artifacts`` (name → manifest entry) and ``records`` (stage name →
    stage record); None for an artifact or record that does not exist."""
    kind, _, name = key.partition(":")
    if key == ALL_ARTIFACTS:
        return sha256_json(sorted(artifacts.items()))
    if key == ALL_RECORDS:
        return sha256_json({stage: record_digest(record) for stage, record in sorted(records.items())})
    if kind == "artifact":
        return sha256_json(artifacts[name]) if name in artifacts else None
    if kind == "record":
        return record_digest(records[name]) if name in records else None
    raise ValueError(f"unknown read key {key!r}")


@dataclass
class StageContext:
    """Handed to :meth:`Stage.run`. ``available`` are the artifacts of earlier stages with the metrics measured so
    far; read them through :attr:`artifacts` / :meth:`artifact`, and earlier stage records through :meth:`record`."""

    run_dir: Path
    stage_dir: Path
    recipe: Recipe
    device: Device
    smoke: bool
    data_dir: Path | None
    console: Console
    available: list[Artifact]
    load_data: Callable[[], DataBundle]
    log_file: Path | None = None
    earlier_records: dict[str, dict[str, Any]] = field(default_factory=dict)
    reads: dict[str, str | None] = field(default_factory=dict)

    def data(self) -> DataBundle:
        """The recipe's data set (cut to small subsets in a smoke run), loaded once per run."""
        return self.load_data()

    def _note(self, key: str) -> None:
        self.reads[key] = fingerprint(key, {a.name: a.to_dict() for a in self.available}, self.earlier_records)

    @property
    def artifacts(self) -> list[Artifact]:
        """Every earlier artifact (the stage then depends on all of them)."""
        self._note(ALL_ARTIFACTS)
        return list(self.available)

    def artifact(self, name: str) -> Artifact | None:
        """An earlier artifact by name (its absence is noted too: one appearing later re-runs the stage)."""
        self._note(f"artifact:{name}")
        return next((a for a in self.available if a.name == name), None)

    def record(self, stage: str) -> dict[str, Any] | None:
        """The record (``stage.json``) of an earlier stage, or None if it did not run."""
        self._note(f"record:{stage}")
        return self.earlier_records.get(stage)

    def records(self) -> dict[str, dict[str, Any]]:
        """The records of every earlier stage, by name."""
        self._note(ALL_RECORDS)
        return dict(self.earlier_records)

    def path(self, artifact: Artifact) -> Path:
        """Absolute path of an artifact."""
        return self.run_dir / artifact.path

    def log(self, message: str) -> None:
        """A progress line on the console and in the run log."""
        self.console.print(f"  [dim]{message}[/dim]")
        if self.log_file is not None:
            with open(self.log_file, "a", encoding="utf-8") as handle:
                handle.write(message + "\n")
