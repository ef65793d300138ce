"""What a stage is, and the registry stages plug into. The runner only knows this interface, never a stage by name."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from edgekd._registry import Registry
from edgekd.config import Device, Recipe
from edgekd.pipeline.artifacts import Artifact
from edgekd.pipeline.context import StageContext


@dataclass
class StageResult:
    """What a stage hands back to the runner: new artifacts, metrics for any artifact by name, and free info."""

    artifacts: list[Artifact] = field(default_factory=list)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)  # top-level manifest fields, e.g. {"selected": name}
    files: list[Path] = field(default_factory=list)  # other outputs (reports, plots), checked like artifacts
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)  # earlier artifact → {reason, exit_code}


class Stage(ABC):
    """One step of the pipeline. A stage reads earlier artifacts through its context and writes in its own folder.

    Subclasses declare ``name``, ``order`` (position in the pipeline), ``needs`` (names of the stages whose outputs it
    reads: their output digests enter its cache key; :data:`EVERY_EARLIER_STAGE` for all of them) and implement :meth:`enabled`, :meth:`config` and :meth:`run`.
    A stage that trains with several processes under ``torchrun`` sets ``distributed = True``: every rank then calls
    :meth:`run` (only rank 0 may write files); other stages run on rank 0 alone.
    """

    name: ClassVar[str]
    order: ClassVar[int]
    needs: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    distributed: ClassVar[bool] = False

    @abstractmethod
    def enabled(self, recipe: Recipe, device: Device) -> bool:
        """Whether the recipe asks for this stage."""

    @abstractmethod
    def config(self, recipe: Recipe, device: Device, smoke: bool) -> dict[str, Any]:
        """Everything that changes this stage's outputs (enters the cache key). Cosmetic fields stay out."""

    @abstractmethod
    def run(self, ctx: StageContext) -> StageResult:
        """Do the work; write files under ``ctx.stage_dir``; return what was made."""


STAGES: Registry[type[Stage]] = Registry("stage")

#: ``needs`` of a stage that reads every artifact made before it (evaluate, bench, select, report)
EVERY_EARLIER_STAGE: tuple[str, ...] = ("*",)


def register_stage(cls: type[Stage]) -> type[Stage]:
    """Class decorator adding a stage to :data:`STAGES` under its ``name``."""
    STAGES.add(cls.name, cls, order=cls.order, description=cls.description)
    return cls


def ordered_stages() -> list[Stage]:
    """One instance of every registered stage, in pipeline order."""
    return [entry.obj() for entry in sorted(STAGES.entries(), key=lambda e: e.meta["order"])]
