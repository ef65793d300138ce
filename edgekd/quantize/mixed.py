"""Mixed-precision INT8 for ONNX Runtime: the most sensitive nodes stay in float, the rest is static Q/DQ INT8.

From a :class:`~edgekd.quantize.sensitivity.SensitivityTable`, the first ``k`` rows are passed to
``quantize_static(..., nodes_to_exclude=...)``. ``k`` is given, or chosen as the smallest that brings the validation
accuracy within ``max_drop`` of the float model's (NNCF's accuracy-control criterion, with ONNX Runtime's exclusion
mechanism and this table's ranking): ``k = 0, 1, 2, ...`` is tried in turn, since accuracy is not monotone in ``k``.
The model lists its float nodes in its metadata (:data:`FLOAT_NODES_KEY`); ONNX Runtime computes them in float only
in a session with :data:`~edgekd.quantize.sensitivity.KEEP_FLOAT` disabled, as the accuracies here are measured.

Use::

    mixed = ort_mixed_precision(fp32_onnx, out / "model.onnx", calibration, val_x, val_y, table, max_drop=0.01,
                                work_dir=tmp, per_channel=True, symmetric_activations=False)
    mixed.excluded   # the node names kept in float

The recipe's ``ort-mixed`` and ``nncf-mixed`` engines (:func:`mixed_build`) rank and choose on the validation split
(:func:`ranked_mixed_precision`), ``nncf-mixed`` with NNCF's exclusion mechanism
(:func:`~edgekd.quantize.nncf_mixed.nncf_mixed_precision`); ``aiq-mixed`` (LiteRT) and ``trt-mixed`` (TensorRT) keep
``ort-mixed``'s choice in float with their runtime's own mechanism (:func:`chosen_build`)::

    quantize:
      engines: [ort, ort-mixed, nncf-mixed, aiq-mixed, trt-mixed]
      mixed: {max_drop: 0.01, ranking_samples: 5000, max_excluded: 8}   # or float_nodes: 2 (a fixed count)
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgekd._atomic import atomic_path
from edgekd.errors import UserError
from edgekd.quantize.jobs import Int8Build, Int8Job
from edgekd.quantize.ort import ort_static_quantize
from edgekd.quantize.sensitivity import (
    RANKING_SAMPLES,
    SQNR_SAMPLES,
    SensitivityTable,
    ort_sensitivity,
    top1_accuracy,
)

log = logging.getLogger(__name__)


FLOAT_NODES_KEY = "edgekd.float_nodes"
"""The model metadata key (``metadata_props``) listing, as a JSON array, the nodes a mixed-precision model keeps in
float: a runtime session reads it to keep them float (:data:`~edgekd.quantize.sensitivity.KEEP_FLOAT`)."""


def _write_marked(candidate: Path, out: Path, excluded: tuple[str, ...]) -> None:
    """``candidate`` written to ``out`` (atomically) with the float nodes in its metadata."""
    import onnx

    model = onnx.load(str(candidate))
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                        FLOAT_NODES_KEY: json.dumps(list(excluded))})
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))


@dataclass(frozen=True)
class MixedPrecision:
    """The mixed-precision model written: its path, the nodes kept in float (most sensitive first), its and the
    float model's validation accuracy, and ``(k, validation accuracy)`` of every ``k`` tried, in order."""

    path: Path
    excluded: tuple[str, ...]
    accuracy: float
    fp32_accuracy: float
    tried: tuple[tuple[int, float], ...] = ()


def ort_mixed_precision(fp32_onnx: Path, out: Path, calibration: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                        table: SensitivityTable, *, work_dir: Path, max_drop: float | None = None,
                        k: int | None = None, max_excluded: int | None = None, **options: Any) -> MixedPrecision:
    """Write the INT8 model with the ``k`` most sensitive nodes of ``table`` in float to ``out`` (atomically).

    Args:
        fp32_onnx: the deployable fp32 ONNX model ``table`` was measured on.
        out: the ``.onnx`` file to write.
        calibration: float32 NCHW train samples in [0, 1].
        val_x, val_y: validation samples and labels the drop is judged on.
        table: the ranking, most sensitive first.
        work_dir: a folder for the candidate models.
        max_drop: largest allowed top-1 drop against the float model (0.01 = one point); exactly one of
            ``max_drop`` and ``k`` is given.
        k: the number of nodes kept in float.
        max_excluded: with ``max_drop``, the most nodes tried in float (None: every ranked node).
        options: :func:`~edgekd.quantize.ort.ort_static_quantize` options, as for ``table``.
    """
    if len(val_x) != len(val_y):
        raise ValueError(f"{len(val_x)} validation samples but {len(val_y)} labels")
    work_dir.mkdir(parents=True, exist_ok=True)

    def candidate(excluded: tuple[str, ...]) -> Path:
        return ort_static_quantize(fp32_onnx, work_dir / f"mixed-{len(excluded)}.onnx", calibration,
                                   nodes_to_exclude=excluded, **options)

    chosen = search_float_nodes(
        fp32_onnx, [r.node for r in table.rows], candidate, lambda path: top1_accuracy(path, val_x, val_y),
        lambda: top1_accuracy(fp32_onnx, val_x, val_y), max_drop=max_drop, k=k, max_excluded=max_excluded)
    _write_marked(chosen.path, out, chosen.excluded)
    chosen.path.unlink()
    return MixedPrecision(Path(out), chosen.excluded, chosen.accuracy, chosen.fp32_accuracy, chosen.tried)


def search_float_nodes(source: Path, ranked: Sequence[str], candidate: Callable[[tuple[str, ...]], Path],
                       accuracy: Callable[[Path], float], fp32_accuracy: Callable[[], float], *,
                       max_drop: float | None = None, k: int | None = None, max_excluded: int | None = None,
                       discard: Callable[[Path], None] = Path.unlink) -> MixedPrecision:
    """The first candidate model, with the first ``k`` nodes of ``ranked`` in float, whose accuracy is within
    ``max_drop`` of the float model's, trying ``k = 0, 1, 2, ...`` in turn (or exactly ``k``); a UserError naming
    the best one tried when none is. The engine-neutral half of mixed precision: ``candidate`` quantizes with the
    engine's own exclusion mechanism, ``accuracy`` scores a model on the validation samples, ``fp32_accuracy``
    scores ``source`` on the same samples; the candidates not returned are ``discard``-ed.

    Args:
        source: the float model (named in the error).
        ranked: node names, most sensitive first.
        max_drop, k, max_excluded: as for :func:`ort_mixed_precision`.
    """
    if (max_drop is None) == (k is None):
        raise ValueError("give exactly one of max_drop and k")
    if k is not None and not 0 <= k <= len(ranked):
        raise ValueError(f"k must be in [0, {len(ranked)}] (the quantized nodes), got {k}")
    if max_drop is not None and not 0 <= max_drop < 1:
        raise ValueError(f"max_drop is an absolute accuracy drop in [0, 1), got {max_drop}")
    if max_excluded is not None and max_excluded < 0:
        raise ValueError(f"max_excluded must be >= 0, got {max_excluded}")
    reference = fp32_accuracy()
    most = len(ranked) if max_excluded is None else min(max_excluded, len(ranked))
    tried: list[tuple[int, float]] = []
    for count in [k] if k is not None else range(most + 1):
        excluded = tuple(ranked[:count])
        path = candidate(excluded)
        score = accuracy(path)
        tried.append((count, score))
        log.debug("%d nodes in float: validation accuracy %.4f (float %.4f)", count, score, reference)
        if max_drop is None or reference - score <= max_drop:
            return MixedPrecision(path, excluded, score, reference, tuple(tried))
        discard(path)
    best_count, best = max(tried, key=lambda t: t[1])
    which = (f"all {len(ranked)} ranked nodes" if most == len(ranked)
             else f"up to {most} of the {len(ranked)} ranked nodes (max_excluded)")
    raise UserError(f"{source}: no mixed-precision model is within a drop of {max_drop} with {which} in float: "
                    f"the best, {best_count} in float, loses {reference - best:.4f} (float {reference:.4f})")


def ranked_mixed_precision(fp32_onnx: Path, out: Path, calibration: np.ndarray, val_x: np.ndarray,
                           val_y: np.ndarray, *, max_drop: float, float_nodes: int | None = None,
                           ranking_samples: int = RANKING_SAMPLES, sqnr_samples: int = SQNR_SAMPLES,
                           max_excluded: int | None = None, ranking_options: dict[str, Any] | None = None,
                           engine: Callable[..., MixedPrecision] | None = None,
                           engine_options: dict[str, Any] | None = None, table: SensitivityTable | None = None
                           ) -> tuple[MixedPrecision, SensitivityTable]:
    """Rank the nodes (:func:`~edgekd.quantize.sensitivity.ort_sensitivity`) and write the mixed-precision model
    (``engine``: :func:`ort_mixed_precision` by default), both on the first ``ranking_samples`` validation samples:
    the ranking, the float model's accuracy and every candidate's are measured on that same subset.

    Args:
        fp32_onnx, out, calibration: as for ``engine``.
        val_x, val_y: validation samples and labels (never test: they choose the float nodes).
        max_drop: largest allowed drop, used when ``float_nodes`` is None.
        float_nodes: keep exactly this many of the most sensitive nodes in float.
        ranking_samples, sqnr_samples, max_excluded: the ranking subset, the SQNR samples, the most float nodes.
        ranking_options: :func:`~edgekd.quantize.ort.ort_static_quantize` options of the ranked INT8 model.
        engine: writes the model with the float nodes it is given (same arguments as :func:`ort_mixed_precision`).
        engine_options: ``engine``'s quantizer options (default: ``ranking_options``).
        table: the ranking, when already measured on the same model, samples and options (not measured again).
    """
    ranking_options = ranking_options or {}
    rank_x, rank_y = val_x[:ranking_samples], np.asarray(val_y)[:ranking_samples]
    with tempfile.TemporaryDirectory(prefix="edgekd-mixed-") as work:
        if table is None:
            table = ort_sensitivity(fp32_onnx, calibration, rank_x, rank_y, work_dir=Path(work) / "ranking",
                                    sqnr_samples=sqnr_samples, ranking_samples=ranking_samples, **ranking_options)
        mixed = (engine or ort_mixed_precision)(
            fp32_onnx, out, calibration, rank_x, rank_y, table, work_dir=Path(work) / "candidates", k=float_nodes,
            max_drop=max_drop if float_nodes is None else None, max_excluded=max_excluded,
            **(ranking_options if engine_options is None else engine_options))
    return mixed, table


def mixed_info(mixed: MixedPrecision, table: SensitivityTable, max_drop: float | None) -> dict[str, Any]:
    """The JSON record of a mixed-precision model (an artifact's ``info.mixed``): the split and subset that chose,
    the float nodes, every ``k`` tried with its accuracy, and per node its SQNR, the SQNR of the error it adds, the
    accuracy regained when it alone is float, and the precision it was given. ``int8_accuracy`` is this engine's
    all-INT8 model (None when ``k = 0`` was not tried); ``ranking_int8_accuracy`` the ranking's ONNX Runtime INT8."""
    float_nodes = set(mixed.excluded)
    return {"split": "validation", "ranking_samples": table.ranking_samples, "max_drop": max_drop,
            "k": len(mixed.excluded), "excluded": list(mixed.excluded), "fp32_accuracy": mixed.fp32_accuracy,
            "int8_accuracy": dict(mixed.tried).get(0), "ranking_int8_accuracy": table.int8_accuracy,
            "accuracy": mixed.accuracy,
            "tried": [{"k": k, "accuracy": accuracy} for k, accuracy in mixed.tried],
            "sensitivity": [{"node": r.node, "op_type": r.op_type, "sqnr_db": r.sqnr_db,
                             "added_sqnr_db": r.added_sqnr_db, "accuracy_gain": r.accuracy_gain,
                             "precision": "fp32" if r.node in float_nodes else "int8"} for r in table.rows]}


def ranking_key(job: Int8Job, fp32: Path, options: dict[str, Any]) -> tuple[Any, ...]:
    """The ``job.shared`` key of the ranking of ``fp32`` under ONNX Runtime ``options`` (the model, samples and
    options it depends on); ``("choice", *key)`` keys ``ort-mixed``'s choice of float nodes on that ranking."""
    cfg = job.cfg.mixed
    return ("sensitivity", str(fp32), cfg.ranking_samples, cfg.sqnr_samples, tuple(sorted(options.items())))


def mixed_build(job: Int8Job, fmt: str, runtime: str, main_file: str, method: str,
                engine: Callable[..., MixedPrecision] | None = None,
                engine_options: dict[str, Any] | None = None, twin: str | None = None) -> Int8Build:
    """The INT8 build of a mixed-precision engine (:func:`ranked_mixed_precision` with the recipe's
    ``quantize.mixed`` settings, ranked and chosen on the job's validation split), writing ``main_file`` inside its
    folder; the build's ``info.mixed`` records the choice (:func:`mixed_info`). The ranking is measured once per
    quantize stage (kept in ``job.shared`` under the model, samples and options it depends on) and read by every
    mixed-precision engine. ``ort-mixed`` (``engine`` None) also keeps its choice there for the engines that reuse
    it (:func:`chosen_build`), and takes it from there when one of them made it first.
    ``twin``: the artifact that is the same graph when no node stays in float."""
    cfg, found = job.cfg.mixed, dict[str, Any]()

    def build(out: Path) -> Path:
        val_x, val_y = job.val()
        fp32 = job.fp32("onnx")
        options = job.ort_options()
        key = ranking_key(job, fp32, options)
        chosen = job.shared.get(("choice", *key)) if engine is None else None
        count = cfg.float_nodes if chosen is None else len(chosen.excluded)
        mixed, table = ranked_mixed_precision(
            fp32, out / main_file, job.calibration, val_x, val_y, max_drop=cfg.max_drop,
            float_nodes=count, ranking_samples=cfg.ranking_samples, sqnr_samples=cfg.sqnr_samples,
            max_excluded=cfg.max_excluded, ranking_options=options, engine=engine,
            engine_options=engine_options, table=job.shared.get(key))
        job.shared[key] = table
        if engine is None:
            mixed = mixed if chosen is None else replace(mixed, tried=chosen.tried)
            job.shared[("choice", *key)] = mixed
        found["mixed"] = mixed_info(mixed, table, cfg.max_drop if cfg.float_nodes is None else None)
        return mixed.path

    return Int8Build(job.name(fmt, method), fmt, runtime, build, found, twin)


def ort_choice(job: Int8Job) -> tuple[MixedPrecision, SensitivityTable]:
    """``ort-mixed``'s choice of float nodes (:func:`ranked_mixed_precision` with the recipe's ``quantize.mixed``
    settings and ONNX Runtime's exclusion mechanism) and the ranking it was made on, each computed once per quantize
    stage and kept in ``job.shared``. The returned model's file is not kept: only its float nodes, accuracies and
    the counts tried are read."""
    cfg = job.cfg.mixed
    fp32, options = job.fp32("onnx"), job.ort_options()
    key = ranking_key(job, fp32, options)
    if ("choice", *key) not in job.shared:
        val_x, val_y = job.val()
        with tempfile.TemporaryDirectory(prefix="edgekd-choice-") as work:
            mixed, table = ranked_mixed_precision(
                fp32, Path(work) / "model.onnx", job.calibration, val_x, val_y, max_drop=cfg.max_drop,
                float_nodes=cfg.float_nodes, ranking_samples=cfg.ranking_samples, sqnr_samples=cfg.sqnr_samples,
                max_excluded=cfg.max_excluded, ranking_options=options, table=job.shared.get(key))
        job.shared[key] = table
        job.shared[("choice", *key)] = mixed
    chosen: MixedPrecision = job.shared[("choice", *key)]
    return chosen, job.shared[key]


ChosenEngine = Callable[[Path, Path, tuple[str, ...], np.ndarray, np.ndarray, Path],
                        tuple[MixedPrecision, dict[str, Any]]]
"""An engine that keeps given nodes in float with its own exclusion mechanism: called with the fp32 ONNX model the
ranking was measured on, the file to write, the ONNX node names to keep in float (most sensitive first), the
ranking subset's samples and labels, and a scratch folder; returns the model written (its ``excluded``: the nodes
it did keep in float, its and the float model's accuracy on those samples) and what else ``info.mixed`` records
(e.g. the nodes it could not keep in float, and why)."""


def chosen_build(job: Int8Job, fmt: str, runtime: str, main_file: str, method: str, engine: ChosenEngine,
                 twin: str | None = None) -> Int8Build:
    """The INT8 build of an engine that keeps ``ort-mixed``'s float nodes (:func:`ort_choice`: the same ranking and
    the same count ``k``, not searched again) in float with its own exclusion mechanism, writing ``main_file``
    inside its folder. Its ``info.mixed`` is :func:`mixed_info` of what the engine built, with ``chosen_by``: the
    engine that chose, its float nodes and every count it tried; ``k`` counts the nodes the engine did keep in
    float, so a choice none of whose nodes it can keep float is ``twin``'s graph."""
    cfg, found = job.cfg.mixed, dict[str, Any]()

    def build(out: Path) -> Path:
        choice, table = ort_choice(job)
        val_x, val_y = job.val()
        rank_x, rank_y = val_x[:cfg.ranking_samples], np.asarray(val_y)[:cfg.ranking_samples]
        with tempfile.TemporaryDirectory(prefix="edgekd-chosen-") as work:
            mixed, extra = engine(job.fp32("onnx"), out / main_file, choice.excluded, rank_x, rank_y, Path(work))
        found["mixed"] = {**mixed_info(mixed, table, cfg.max_drop if cfg.float_nodes is None else None),
                          "chosen_by": {"engine": "ort-mixed", "excluded": list(choice.excluded),
                                        "tried": [{"k": k, "accuracy": a} for k, a in choice.tried]}, **extra}
        return mixed.path

    return Int8Build(job.name(fmt, method), fmt, runtime, build, found, twin)
