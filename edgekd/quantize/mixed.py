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

The ``ort-mixed`` engine of a recipe ranks and chooses on the validation split
(:func:`ranked_mixed_precision`)::

    quantize:
      engines: [ort, ort-mixed]
      mixed: {max_drop: 0.01, ranking_samples: 300, max_excluded: 8}   # or float_nodes: 2 (a fixed count)
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd._atomic import atomic_path
from edgekd.errors import UserError
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
    if (max_drop is None) == (k is None):
        raise ValueError("give exactly one of max_drop and k")
    if k is not None and not 0 <= k <= len(table.rows):
        raise ValueError(f"k must be in [0, {len(table.rows)}] (the quantized nodes), got {k}")
    if max_drop is not None and not 0 <= max_drop < 1:
        raise ValueError(f"max_drop is an absolute accuracy drop in [0, 1), got {max_drop}")
    if len(val_x) != len(val_y):
        raise ValueError(f"{len(val_x)} validation samples but {len(val_y)} labels")
    work_dir.mkdir(parents=True, exist_ok=True)
    fp32_accuracy = top1_accuracy(fp32_onnx, val_x, val_y)
    if max_excluded is not None and max_excluded < 0:
        raise ValueError(f"max_excluded must be >= 0, got {max_excluded}")
    most = len(table.rows) if max_excluded is None else min(max_excluded, len(table.rows))
    candidates = [k] if k is not None else list(range(most + 1))
    tried: list[tuple[int, float]] = []
    for count in candidates:
        excluded = tuple(r.node for r in table.rows[:count])
        candidate = ort_static_quantize(fp32_onnx, work_dir / f"mixed-{count}.onnx", calibration,
                                        nodes_to_exclude=excluded, **options)
        accuracy = top1_accuracy(candidate, val_x, val_y)
        tried.append((count, accuracy))
        log.debug("%d nodes in float: validation accuracy %.4f (float %.4f)", count, accuracy, fp32_accuracy)
        if max_drop is None or fp32_accuracy - accuracy <= max_drop:
            _write_marked(candidate, out, excluded)
            candidate.unlink()
            return MixedPrecision(Path(out), excluded, accuracy, fp32_accuracy, tuple(tried))
        candidate.unlink()
    best_count, best = max(tried, key=lambda t: t[1])
    which = (f"all {len(table.rows)} ranked nodes" if most == len(table.rows)
             else f"up to {most} of the {len(table.rows)} ranked nodes (max_excluded)")
    raise UserError(f"{fp32_onnx}: no mixed-precision model is within a drop of {max_drop} with {which} in float: "
                    f"the best, {best_count} in float, loses {fp32_accuracy - best:.4f} (float {fp32_accuracy:.4f})")


def ranked_mixed_precision(fp32_onnx: Path, out: Path, calibration: np.ndarray, val_x: np.ndarray,
                           val_y: np.ndarray, *, max_drop: float, float_nodes: int | None = None,
                           ranking_samples: int = RANKING_SAMPLES, sqnr_samples: int = SQNR_SAMPLES,
                           max_excluded: int | None = None, **options: Any) -> tuple[MixedPrecision, SensitivityTable]:
    """Rank the nodes (:func:`~edgekd.quantize.sensitivity.ort_sensitivity`) and write the mixed-precision model
    (:func:`ort_mixed_precision`), both on the first ``ranking_samples`` validation samples: the ranking, the float
    model's accuracy and every candidate's are measured on that same subset.

    Args:
        fp32_onnx, out, calibration, options: as for :func:`ort_mixed_precision`.
        val_x, val_y: validation samples and labels (never test: they choose the float nodes).
        max_drop: largest allowed drop, used when ``float_nodes`` is None.
        float_nodes: keep exactly this many of the most sensitive nodes in float.
        ranking_samples, sqnr_samples, max_excluded: the ranking subset, the SQNR samples, the most float nodes.
    """
    rank_x, rank_y = val_x[:ranking_samples], np.asarray(val_y)[:ranking_samples]
    with tempfile.TemporaryDirectory(prefix="edgekd-mixed-") as work:
        table = ort_sensitivity(fp32_onnx, calibration, rank_x, rank_y, work_dir=Path(work) / "ranking",
                                sqnr_samples=sqnr_samples, ranking_samples=ranking_samples, **options)
        mixed = ort_mixed_precision(fp32_onnx, out, calibration, rank_x, rank_y, table,
                                    work_dir=Path(work) / "candidates", k=float_nodes,
                                    max_drop=max_drop if float_nodes is None else None, max_excluded=max_excluded,
                                    **options)
    return mixed, table


def mixed_info(mixed: MixedPrecision, table: SensitivityTable, max_drop: float | None) -> dict[str, Any]:
    """The JSON record of a mixed-precision model (an artifact's ``info.mixed``): the split and subset that chose,
    the float nodes, every ``k`` tried with its accuracy, and per node its SQNR, the SQNR of the error it adds, the
    accuracy regained when it alone is float, and the precision it was given."""
    float_nodes = set(mixed.excluded)
    return {"split": "validation", "ranking_samples": table.ranking_samples, "max_drop": max_drop,
            "k": len(mixed.excluded), "excluded": list(mixed.excluded), "fp32_accuracy": mixed.fp32_accuracy,
            "int8_accuracy": table.int8_accuracy, "accuracy": mixed.accuracy,
            "tried": [{"k": k, "accuracy": accuracy} for k, accuracy in mixed.tried],
            "sensitivity": [{"node": r.node, "op_type": r.op_type, "sqnr_db": r.sqnr_db,
                             "added_sqnr_db": r.added_sqnr_db, "accuracy_gain": r.accuracy_gain,
                             "precision": "fp32" if r.node in float_nodes else "int8"} for r in table.rows]}
