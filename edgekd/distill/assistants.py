"""Automatic teacher-assistant selection, after AMD (Han et al., "AMD: Automatic Multi-step Distillation of Large-scale
Vision Models", ECCV 2024; no public code — AMD-inspired: our own design of its idea).

What is selected: one teacher assistant (TA) for the chain ``teacher → TA → student``, among candidates that lie
strictly between student and teacher in parameter count. AMD prunes the teacher at a grid of scales and trains the
candidates jointly; we take the width/depth variants of the teacher's zoo family instead (e.g. CIFAR ResNets of
every depth × the width multipliers of the recipe), keep at most ``max_candidates`` spread evenly in log-scale, and
train each one cheaply (a few epochs, optionally on a training subset) with the recipe's KD losses from the teacher.
The student is trained the same way, as the low anchor of the curve.

How it is scored. With scale ``s = parameters / teacher parameters``, ``x = ln s`` and ``p`` the validation
accuracy, AMD's "negative performance-scale derivative" (NPSD) between a larger model ``a`` and a smaller model ``b``
is the accuracy lost per e-fold of shrinking::

    NPSD(a, b) = (p_a - p_b) / (x_a - x_b)

Both NPSDs of each candidate are recorded. The candidate is ranked by its **height above the student–teacher line**
on the accuracy-vs-log-scale curve::

    score(c) = p_c - (p_S + (x_c - x_S) / (x_T - x_S) * (p_T - p_S))

which is positive exactly when ``c`` lies above the straight line from ``(x_S, p_S)`` to ``(x_T, p_T)`` and largest
at the knee of the curve: the smallest model the teacher can shrink to at little cost. That is the TA TAKD asks for.
The highest score wins; ties go to the smaller candidate. ``p_T`` is the trained teacher's own validation accuracy.

Why the height and not the NPSD difference ``NPSD(c, S) - NPSD(T, c)`` (edgekd's first criterion): that difference
equals ``g * L / (a * b)``, with ``g`` the height, ``L = x_T - x_S`` and ``a``, ``b`` the log-distances of ``c`` to
the student and the teacher, so its weight grows without bound next to either end: with teacher (1.0, 0.75) and
student (0.1, 0.65), a candidate at (0.105, 0.67), two points of training noise above the student, scores 0.374 and
beat the knee at (0.30, 0.74), 0.074, which stands 2.4× as high. The height weighs every candidate alike, so noise
of a point or two moves a score by that much and no more.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

from edgekd.config import ModelRef
from edgekd.errors import UserError
from edgekd.models import MODELS

CRITERION = ("score = height of the candidate above the student-teacher line of validation accuracy vs ln scale "
             "(scale = parameters / teacher parameters); highest score wins, ties: smaller (AMD-inspired)")


@dataclass(frozen=True)
class Point:
    """A model on the accuracy-vs-scale curve."""

    scale: float
    accuracy: float


def npsd(larger: Point, smaller: Point) -> float:
    """Negative performance-scale derivative: accuracy lost per e-fold of scale from ``larger`` to ``smaller``."""
    span = math.log(larger.scale) - math.log(smaller.scale)
    if span <= 0:
        raise ValueError(f"scale {larger.scale} must exceed scale {smaller.scale}")
    return (larger.accuracy - smaller.accuracy) / span


def height(candidate: Point, teacher: Point, student: Point) -> float:
    """Accuracy of ``candidate`` above the straight line from the student to the teacher in log-scale."""
    x_s, x_t, x_c = (math.log(p.scale) for p in (student, teacher, candidate))
    if not x_s < x_c < x_t:
        raise ValueError(f"candidate scale {candidate.scale} is not strictly between the student's "
                         f"{student.scale} and the teacher's {teacher.scale}")
    return candidate.accuracy - (student.accuracy + (x_c - x_s) / (x_t - x_s) * (teacher.accuracy - student.accuracy))


def score(candidate: Point, teacher: Point, student: Point) -> dict[str, float]:
    """The candidate's two NPSDs (recorded) and its score, the height above the student–teacher line (ranked)."""
    return {"npsd_teacher_side": npsd(teacher, candidate), "npsd_student_side": npsd(candidate, student),
            "score": height(candidate, teacher, student)}


def choose(candidates: list[Point], teacher: Point, student: Point) -> tuple[int, list[dict[str, float]]]:
    """Index of the best candidate and every candidate's scores."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    scores = [score(c, teacher, student) for c in candidates]
    best = min(range(len(candidates)), key=lambda i: (-scores[i]["score"], candidates[i].scale))
    return best, scores


def ref_label(ref: ModelRef) -> str:
    """A short, folder-safe name of a model reference: ``resnet14``, ``resnet8-width2.0``."""
    parts = [ref.name.replace(":", "-").replace(".", "-")]
    parts += [f"{key}{value}" for key, value in sorted(ref.kwargs.items())]
    return "-".join(parts)


def _width_argument(name: str) -> str | None:
    """The factory's width multiplier argument (``width`` / ``width_mult``) when its default is 1."""
    params = inspect.signature(MODELS.get(name)).parameters
    for arg in ("width", "width_mult"):
        if arg in params and params[arg].default == 1.0:
            return arg
    return None


def family_grid(teacher: ModelRef, student: ModelRef, widths: list[float]) -> list[ModelRef]:
    """Every zoo model of the teacher's family at every width multiplier (1.0 = the model as registered)."""
    for role, ref in (("teacher", teacher), ("student", student)):
        if ref.name not in MODELS:
            raise UserError(f"distill.auto_assistant: the {role} {ref.name!r} is a user model; list the "
                            "candidates in distill.auto_assistant.candidates")
    family = MODELS.entry(teacher.name).meta["family"]
    if MODELS.entry(student.name).meta["family"] != family:
        raise UserError(f"distill.auto_assistant: teacher {teacher.name!r} and student {student.name!r} are of "
                        "different zoo families; list the candidates in distill.auto_assistant.candidates")
    grid = []
    for entry in MODELS.entries():
        if entry.meta["family"] != family:
            continue
        width_arg = _width_argument(entry.name)
        for width in widths:
            if width == 1.0:
                grid.append(ModelRef(name=entry.name))
            elif width_arg is not None:
                grid.append(ModelRef(name=entry.name, kwargs={width_arg: width}))
    return grid


def spread(sizes: list[int], low: int, high: int, count: int) -> list[int]:
    """Indices of at most ``count`` of ``sizes`` nearest to evenly spaced points of ``(ln low, ln high)``."""
    if len(sizes) <= count:
        return sorted(range(len(sizes)), key=lambda i: sizes[i])
    step = (math.log(high) - math.log(low)) / (count + 1)
    chosen: list[int] = []
    for k in range(1, count + 1):
        target = math.log(low) + k * step
        free = [i for i in range(len(sizes)) if i not in chosen]
        chosen.append(min(free, key=lambda i: (abs(math.log(sizes[i]) - target), sizes[i])))
    return sorted(chosen, key=lambda i: sizes[i])


def candidate_refs(
    teacher: ModelRef,
    student: ModelRef,
    parameters: Callable[[ModelRef], int],
    *,
    explicit: list[ModelRef],
    widths: list[float],
    max_candidates: int,
) -> list[tuple[ModelRef, int]]:
    """The candidates to train with their parameter counts, smallest first.

    Explicit candidates are taken as given (each must lie strictly between student and teacher); otherwise the
    family grid is filtered to that range and thinned to ``max_candidates`` evenly in log-scale.
    """
    low, high = parameters(student), parameters(teacher)
    if explicit:
        sized = [(ref, parameters(ref)) for ref in explicit]
        for i, (ref, n) in enumerate(sized):
            if not low < n < high:
                raise UserError(f"distill.auto_assistant.candidates.{i}: {ref.name} has {n:,} parameters, not "
                                f"strictly between the student ({low:,}) and the teacher ({high:,})")
        return sorted(sized, key=lambda item: item[1])
    sized = [(ref, n) for ref in family_grid(teacher, student, widths) if low < (n := parameters(ref)) < high]
    if not sized:
        raise UserError(f"distill.auto_assistant: no model of the {teacher.name!r} family lies between the student "
                        f"({low:,} parameters) and the teacher ({high:,}); add widths or list candidates")
    keep = spread([n for _, n in sized], low, high, max_candidates)
    return [sized[i] for i in keep]
