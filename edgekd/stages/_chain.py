"""The one way stages train a chain of recipe models (distill, select-assistant, ablation all go through here)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from rich.console import Console
from torch import nn

from edgekd.config import LossTerm, ModelRef, TrainConfig
from edgekd.data import DataBundle, Split
from edgekd.distill.chain import ChainStep, Link, make_terms, train_chain
from edgekd.distill.trainer import accuracy
from edgekd.errors import UserError
from edgekd.pipeline.context import StageContext
from edgekd.pipeline.manifest import read_json
from edgekd.runtime import Normalize
from edgekd.stages._models import build_net

#: where stage `select-assistant` writes its choice, relative to the run directory
SELECTION_FILE = Path("select-assistant") / "assistant.json"
#: the trainer's teacher-output cache, shared by every chain of a run (entries are keyed by teacher and data)
TEACHER_CACHE = Path("cache") / "teacher-logits"


def _build(ref: ModelRef, data: DataBundle) -> nn.Module:
    return build_net(ref, data)[0]


def train_refs(
    run_dir: Path,
    data: DataBundle,
    chain: list[tuple[str, ModelRef]],
    workdir: Path,
    *,
    teacher: tuple[nn.Module, ModelRef] | None,
    losses: list[LossTerm],
    config: TrainConfig,
    seed: int,
    ce_weight: float,
    console: Console | None = None,
) -> list[ChainStep]:
    """Train ``chain`` (``(folder name, model)`` pairs, largest first) below ``teacher`` with the recipe's losses.

    Each step is distilled from the previous one with fresh loss modules whose feature taps pair that step's two
    models; without a teacher the first step trains on cross-entropy alone. Takes no stage context, so an executor
    task can call it: ``run_dir`` holds the shared teacher-output cache.
    """
    above = teacher[1] if teacher is not None else None
    links = []
    for name, ref in chain:
        terms = partial(make_terms, losses, ref, above) if above is not None and losses else list
        links.append(Link(name, partial(_build, ref, data), terms))
        above = ref
    return train_chain(links, data, config, workdir, teacher=teacher[0] if teacher is not None else None,
                       seed=seed, ce_weight=ce_weight, console=console,
                       teacher_cache_dir=run_dir / TEACHER_CACHE)


def candidate_task(data: DataBundle, teacher: tuple[nn.Module, ModelRef], run_dir: Path, workdir: Path,
                   folder: str, ref: ModelRef, losses: list[LossTerm], config: TrainConfig, seed: int,
                   ce_weight: float) -> float:
    """An executor task: train one model ``ref`` with KD from ``teacher`` in ``workdir/folder`` (resumable; a
    finished step is loaded), and return its validation accuracy."""
    step = train_refs(run_dir, data, [(folder, ref)], workdir, teacher=teacher, losses=losses, config=config,
                         seed=seed, ce_weight=ce_weight, console=Console(stderr=True))[0]
    return float(step.record["val_accuracy"])


def split_accuracy(net: nn.Module, split: Split, data: DataBundle) -> float:
    """Top-1 accuracy of a plain net on raw ``split`` (normalised with ``data``'s statistics, on the net's device)."""
    normalize = Normalize(data.mean, data.std).to(next(net.parameters()).device)
    return accuracy(net, split, normalize)


def selected_assistant(ctx: StageContext) -> ModelRef:
    """The teacher assistant chosen by stage `select-assistant` (read from the run directory)."""
    record = read_json(ctx.run_dir / SELECTION_FILE) if ctx.record("select-assistant") is not None else None
    if record is None:
        raise UserError(f"{ctx.run_dir / SELECTION_FILE}: missing; the select-assistant stage must run first")
    return ModelRef.model_validate(record["model"])
