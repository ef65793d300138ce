"""The artifact record of DESIGN.md: one model file (or folder) in the run directory, with what it takes and scores."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from edgekd.capabilities import RUNTIME_SPECS
from edgekd.pipeline.hashing import describe_output

if TYPE_CHECKING:
    Format = str
else:  # the formats of the capability table, an enum in the published schema
    Format = Literal[tuple(dict.fromkeys(f for spec in RUNTIME_SPECS.values() for f in spec.formats))]
Status = Literal["ok", "failed"]

#: roles of artifacts built only to be measured beside the deployed model (the prune stage's baselines, other
#: budgets and the unpruned student): evaluated, timed and reported, never selected
COMPARISON_ROLES = frozenset({"pruned", "unpruned"})


class Record(BaseModel):
    """Base of the run directory's records (manifest, stage records, artifacts).

    Unlike a recipe (``extra="forbid"``: a misspelt key is the user's mistake), a record is written by some edgekd
    version and read by another: fields it does not know are kept (``extra="allow"``) and written back unchanged,
    fields added since it was written take their defaults.
    """

    model_config = ConfigDict(extra="allow")


class ArtifactFile(TypedDict):
    """One file of an artifact, as ``sha256sum -c`` checks it."""

    path: str
    bytes: int
    sha256: str


class Artifact(Record):
    """A model artifact. ``path`` is relative to the run directory; ``metrics`` is filled by later stages.

    ``sha256`` is the SHA-256 of the file at ``path``; ``files`` lists ``{path, bytes, sha256}`` for every file of the
    artifact (an OpenVINO IR: its ``.xml`` and ``.bin``), so ``sha256sum -c`` verifies it; ``combined_sha256`` digests
    them all together (for cache keys). ``bytes`` counts every file. Records written before ``files`` existed load
    with both left empty.

    ``status`` is ``failed`` (with the one-line ``reason``) when a check or a runtime failed on this artifact: it is
    then kept in the manifest and the report with its figures, skipped by later measurements and never selected.
    """

    name: str
    path: str
    format: Format
    precision: str
    runtime: str
    role: str
    input: dict[str, Any]
    bytes: int = 0
    sha256: str = ""
    combined_sha256: str = ""
    files: list[ArtifactFile] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)
    info: dict[str, Any] = Field(default_factory=dict)
    smoke: bool = False
    status: Status = "ok"
    reason: str = ""

    @classmethod
    def from_file(cls, run_dir: Path, path: Path, **fields: Any) -> Artifact:
        """Record ``path`` (inside ``run_dir``) with its size and digests."""
        return cls(path=str(path.relative_to(run_dir)), **describe_output(run_dir, path), **fields)

    def to_dict(self) -> dict[str, Any]:
        """The manifest entry (JSON types only)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Artifact:
        return cls.model_validate(data)


def input_spec(shape: tuple[int, ...] | list[int]) -> dict[str, Any]:
    """The input contract of every artifact: float32 NCHW raw pixels in [0, 1] (batch dimension dynamic: -1)."""
    return {"shape": [-1, *shape[1:]], "dtype": "float32", "range": [0.0, 1.0], "layout": "NCHW"}
