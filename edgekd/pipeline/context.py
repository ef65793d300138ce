"""What a running stage sees: its folder, the recipe and device, earlier artifacts, data, a console."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from edgekd.config import Device, Recipe
from edgekd.pipeline.artifacts import Artifact

if TYPE_CHECKING:
    from edgekd.data import DataBundle

#: sizes of the data subsets a smoke run uses (train, val, test)
SMOKE_SUBSET = (512, 256, 512)


@dataclass
class StageContext:
    """Handed to :meth:`Stage.run`. ``artifacts`` are those of earlier stages, with the metrics measured so far."""

    run_dir: Path
    stage_dir: Path
    recipe: Recipe
    device: Device
    smoke: bool
    data_dir: Path | None
    console: Console
    artifacts: list[Artifact]
    load_data: Callable[[], DataBundle]
    log_file: Path | None = None

    def data(self) -> DataBundle:
        """The recipe's data set (cut to small subsets in a smoke run), loaded once per run."""
        return self.load_data()

    def artifact(self, name: str) -> Artifact | None:
        """An earlier artifact by name."""
        return next((a for a in self.artifacts if a.name == name), None)

    def path(self, artifact: Artifact) -> Path:
        """Absolute path of an artifact."""
        return self.run_dir / artifact.path

    def log(self, message: str) -> None:
        """A progress line on the console and in the run log."""
        self.console.print(f"  [dim]{message}[/dim]")
        if self.log_file is not None:
            with open(self.log_file, "a", encoding="utf-8") as handle:
                handle.write(message + "\n")
