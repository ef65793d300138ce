"""What a stage is, and the registry stages plug into. The runner only knows this interface, never a stage by name.

Stages come from the ``edgekd.stages`` entry-point group (edgekd's own package declares its built-in stages there;
another package can add its own the same way): :func:`ordered_stages` loads the group once, so the runner used as a
library finds every stage without importing any stage module itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from edgekd._registry import Registry
from edgekd.config import Device, Recipe
from edgekd.errors import UserError
from edgekd.pipeline.artifacts import Artifact
from edgekd.pipeline.context import StageContext

if TYPE_CHECKING:
    from edgekd.data import DataBundle

#: entry-point group of the modules whose import registers stages
STAGE_ENTRY_POINTS = "edgekd.stages"


@dataclass
class StageResult:
    """What a stage hands back to the runner: new artifacts, metrics for any artifact by name, and free info."""

    artifacts: list[Artifact] = field(default_factory=list)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)  # top-level manifest fields, e.g. {"selected": name}
    files: list[Path] = field(default_factory=list)  # other outputs (reports, plots), checked like artifacts
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)  # earlier artifact → {reason, exit_code}


@dataclass
class ReportSection:
    """A section a stage adds to the report: a ``## title`` and its markdown lines. ``summary`` sections follow the
    artifact tables (results a reader looks for first); the others come after the training curves. Sections of the
    same title (several stages' training lines, their "Not built" lists) are merged under one heading, in pipeline
    order."""

    title: str
    lines: list[str]
    summary: bool = False


#: the section every training stage adds its line to; the report draws the curves of :meth:`Stage.training_curve`
TRAINING_SECTION = "Training"


class Stage(ABC):
    """One step of the pipeline. A stage reads earlier artifacts through its context and writes in its own folder.

    Subclasses declare ``name``, ``order`` (position in the pipeline), ``needs`` (the stages it must come after; each
    must be registered with a lower order), ``libraries`` (the distributions whose versions change its outputs: they
    enter its cache key) and implement :meth:`enabled`, :meth:`config` and :meth:`run`; :meth:`check` catches a
    recipe or device mistake before any stage runs. What a stage reads through its :class:`StageContext` enters its
    cache key by digest. A stage that trains with several processes under ``torchrun`` sets ``distributed = True``:
    every rank then calls :meth:`run` (only rank 0 may write files); other stages run on rank 0 alone.
    """

    name: ClassVar[str]
    order: ClassVar[int]
    needs: ClassVar[tuple[str, ...]] = ()
    libraries: ClassVar[tuple[str, ...]] = ()
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

    def plan(self, recipe: Recipe, device: Device) -> list[str]:
        """Lines ``edgekd validate`` prints for this stage: what it will build, and what it will not and why."""
        return []

    def report_plots(self, record: dict[str, Any], manifest: dict[str, Any], folder: Path) -> dict[str, Path]:
        """Plots this stage adds to the report (``{key: png written under folder}``), from its ``record`` and the
        run's ``manifest``. Default: none."""
        return {}

    def report_sections(self, record: dict[str, Any], manifest: dict[str, Any], plots: dict[str, Path]
                        ) -> list[ReportSection]:
        """The report sections of this stage, from its ``record`` (``stage.json``), the ``manifest`` and the report's
        ``plots``. Default: none."""
        return []

    def training_curve(self, record: dict[str, Any]) -> tuple[str, list[dict[str, float]]] | None:
        """``(label, per-epoch history)`` for the report's training plot, for a stage that trains. Default: None."""
        return None

    def check(self, recipe: Recipe, device: Device, data: Callable[[], DataBundle]) -> None:
        """Raise :class:`~edgekd.errors.ConfigError` (naming the recipe or device key) for a mistake this stage would
        only meet while running. Called by ``validate`` and by ``run`` before any stage starts; ``data()`` loads the
        recipe's data set once. Default: nothing to check beyond the schemas."""


STAGES: Registry[type[Stage]] = Registry("stage")

#: ``needs`` of a stage that reads every artifact made before it (evaluate, bench, select, report)
EVERY_EARLIER_STAGE: tuple[str, ...] = ("*",)

_loaded: list[bool] = []


def register_stage(cls: type[Stage]) -> type[Stage]:
    """Class decorator adding a stage to :data:`STAGES` under its ``name``."""
    STAGES.add(cls.name, cls, order=cls.order, description=cls.description)
    return cls


def load_stages() -> None:
    """Import every module of the ``edgekd.stages`` entry-point group once (their decorators register the stages),
    then check that each stage's ``needs`` name registered stages that come before it."""
    if _loaded:
        return
    for entry_point in metadata.entry_points(group=STAGE_ENTRY_POINTS):
        entry_point.load()
    _loaded.append(True)
    if not len(STAGES):
        raise UserError(f"no pipeline stage is registered: the {STAGE_ENTRY_POINTS!r} entry points are missing; "
                        "install edgekd (pip install -e .) rather than running it from a bare source folder")
    for entry in STAGES.entries():
        for need in entry.obj.needs:
            if need == "*":
                continue
            if need not in STAGES:
                raise ValueError(f"stage {entry.name!r} needs {need!r}, which is not a registered stage")
            if STAGES.entry(need).meta["order"] >= entry.meta["order"]:
                raise ValueError(f"stage {entry.name!r} needs {need!r}, which does not come before it")


def check_stages(recipe: Recipe, device: Device, data: Callable[[], DataBundle]) -> None:
    """Run every enabled stage's :meth:`Stage.check` (before any stage starts)."""
    for stage in ordered_stages():
        if stage.enabled(recipe, device):
            stage.check(recipe, device, data)


def ordered_stages() -> list[Stage]:
    """One instance of every registered stage, in pipeline order."""
    load_stages()
    return [entry.obj() for entry in sorted(STAGES.entries(), key=lambda e: e.meta["order"])]
