"""Teacher-assistant chains (TAKD: Mirzadeh et al., "Improved Knowledge Distillation via Teacher Assistant", AAAI 2020).

A chain ``teacher → a_1 → … → a_k → student`` trains each model in turn, distilled from the one before it:
``loss_i = ce_weight * CE(a_i(x), y) + sum_j w_j * loss_j(a_i, a_{i-1})`` with ``a_0 = teacher``. A chain of one link
is plain KD (or plain cross-entropy training when there is no teacher). Each step is its own resumable sub-run in
``workdir/<link name>/``: the trainer's epoch checkpoint, then, once the step is done, the best weights
(``model.pt``) and a finished marker (``step.json``) holding the step's record. Running the chain again skips every
step whose marker is there and loads its weights, so an interrupted chain continues at the first unfinished step;
a step comes back on the CPU in the default memory format whether it was trained or loaded
(the caller owns ``workdir``: other models, data or budget need a fresh one, as the stage runner ensures)::

    steps = train_chain([Link("ta", build_ta, kd_terms), Link("student", build_student, kd_terms)],
                        data, config, Path("runs/x"), teacher=teacher, seed=0)
    student = steps[-1].net

Each link's net is built right after ``torch.manual_seed(seed)`` (in a forked RNG), so with the same seed a model
starts from the same weights whatever chain (or ablation variant) it is in. Under ``torchrun`` every rank trains the
chain together and rank 0 alone writes the step files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from edgekd import _distributed as dist
from edgekd._atomic import atomic_write_json
from edgekd.config import LossTerm, ModelRef, TrainConfig
from edgekd.data import DataBundle
from edgekd.distill.trainer import DistillTerm, Trainer
from edgekd.errors import UserError
from edgekd.models import MODELS, count_parameters, save_atomically

STEP_RECORD = "step.json"
STEP_WEIGHTS = "model.pt"


@dataclass
class Link:
    """One model of a chain: its folder name, a builder of the untrained net, and its distillation terms."""

    name: str
    build: Callable[[], nn.Module]
    terms: Callable[[], list[DistillTerm]] = list


@dataclass
class ChainStep:
    """A trained step: its record (what ``step.json`` holds) and the net with its best weights."""

    record: dict[str, Any]
    net: nn.Module = field(repr=False)


def state_digest(net: nn.Module) -> str:
    """SHA-256 of a net's state dict (names and tensor bytes): identifies trained weights across steps."""
    digest = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _default_taps(ref: ModelRef, role: str, index: int) -> list[str]:
    """The zoo's stage outputs of a model, for feature losses whose taps the recipe leaves out."""
    if ref.name not in MODELS:
        raise UserError(f"distill.losses.{index}: {role} {ref.name!r} is a user model: set {role}_taps explicitly")
    return list(MODELS.entry(ref.name).meta.get("default_taps", []))


def make_terms(losses: list[LossTerm], student: ModelRef, teacher: ModelRef) -> list[DistillTerm]:
    """Fresh loss modules for one (student, teacher) pair; feature losses without taps pair the last stage outputs."""
    from edgekd.distill.losses import LOSSES, create

    terms: list[DistillTerm] = []
    for i, term in enumerate(losses):
        kind = LOSSES.entry(term.name).meta["kind"]
        s_taps, t_taps = term.student_taps, term.teacher_taps
        if kind == "feature" and not s_taps:
            s_all = _default_taps(student, "student", i)
            t_all = _default_taps(teacher, "teacher", i)
            n = min(len(s_all), len(t_all))
            s_taps, t_taps = s_all[len(s_all) - n :], t_all[len(t_all) - n :]
        terms.append(DistillTerm(term.weight, create(term.name, **term.params), kind, s_taps, t_taps))
    return terms


def _finished(folder: Path) -> dict[str, Any] | None:
    """The record of a finished step in ``folder`` (None when the step has not finished)."""
    if not (folder / STEP_WEIGHTS).is_file() or not (folder / STEP_RECORD).is_file():
        return None
    return json.loads((folder / STEP_RECORD).read_text(encoding="utf-8"))


def train_chain(
    links: list[Link],
    data: DataBundle,
    config: TrainConfig,
    workdir: Path,
    *,
    teacher: nn.Module | None = None,
    teacher_name: str = "teacher",
    seed: int = 0,
    ce_weight: float = 1.0,
    console: Console | None = None,
    teacher_cache_dir: Path | None = None,
) -> list[ChainStep]:
    """Train ``links`` in order, each distilled from the previous step's result (the first from ``teacher``).

    Args:
        links: the chain below the teacher, largest first; the last link is the student.
        data: training, validation (best epoch) splits.
        config: the training budget of every step.
        workdir: parent of the step folders (``workdir/<link.name>``).
        teacher: the trained teacher, or None for cross-entropy training of a single link.
        teacher_name: how step records name the teacher.
        seed: seed of every step's initial weights, batch order and augmentation.
        ce_weight: weight of the cross-entropy term in every step.
        console: progress output.
        teacher_cache_dir: root of the trainer's teacher-output cache, shared by steps and chains that distil from
            the same teacher on the same data (default: one cache per step folder).

    Returns:
        One :class:`ChainStep` per link, in chain order; ``record["reused"]`` says whether it was found finished.
    """
    if len({link.name for link in links}) != len(links):
        raise ValueError(f"chain links need distinct names, got {[link.name for link in links]}")
    steps: list[ChainStep] = []
    previous, previous_name = teacher, teacher_name
    for index, link in enumerate(links, start=1):
        folder = workdir / link.name
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = link.build()
        record = _finished(folder)
        if record is not None:
            net.load_state_dict(torch.load(folder / STEP_WEIGHTS, map_location="cpu", weights_only=True))
            record = {**record, "reused": True}
        else:
            terms = link.terms() if previous is not None else []
            result = Trainer(net, data, config, folder, seed=seed, teacher=previous if terms else None, terms=terms,
                             ce_weight=ce_weight, console=console, label=link.name,
                             teacher_cache_dir=teacher_cache_dir).fit()
            # leave the chain as a reused step does (CPU, default memory format), so that a step measured right
            # after training and one loaded after a restart compute bit-identical outputs
            net = net.to("cpu", memory_format=torch.contiguous_format)  # type: ignore[call-overload]
            record = {
                "step": index, "name": link.name, "teacher": previous_name if terms else None,
                "parameters": count_parameters(net), "epochs": config.epochs, "best_epoch": result.best_epoch,
                "val_accuracy": result.best_val_accuracy, "history": result.history, "digest": state_digest(net),
                "teacher_digest": state_digest(previous) if terms and previous is not None else None,
                "memory": result.memory, "numerics": result.numerics,
            }
            if dist.is_main():
                save_atomically(folder / STEP_WEIGHTS, {k: v.cpu() for k, v in net.state_dict().items()})
                atomic_write_json(folder / STEP_RECORD, record)
            record = {**record, "reused": False}
        net.eval()
        steps.append(ChainStep(record, net))
        previous, previous_name = net, link.name
    return steps
