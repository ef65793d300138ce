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
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd._atomic import atomic_path
from edgekd.errors import UserError
from edgekd.quantize.ort import ort_static_quantize
from edgekd.quantize.sensitivity import SensitivityTable, top1_accuracy

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
    """The mixed-precision model written: its path, the nodes kept in float (most sensitive first), and its and the
    float model's validation accuracy."""

    path: Path
    excluded: tuple[str, ...]
    accuracy: float
    fp32_accuracy: float


def ort_mixed_precision(fp32_onnx: Path, out: Path, calibration: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                        table: SensitivityTable, *, work_dir: Path, max_drop: float | None = None,
                        k: int | None = None, **options: Any) -> MixedPrecision:
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
    candidates = [k] if k is not None else list(range(len(table.rows) + 1))
    for count in candidates:
        excluded = tuple(r.node for r in table.rows[:count])
        candidate = ort_static_quantize(fp32_onnx, work_dir / f"mixed-{count}.onnx", calibration,
                                        nodes_to_exclude=excluded, **options)
        accuracy = top1_accuracy(candidate, val_x, val_y)
        log.debug("%d nodes in float: validation accuracy %.4f (float %.4f)", count, accuracy, fp32_accuracy)
        if max_drop is None or fp32_accuracy - accuracy <= max_drop:
            _write_marked(candidate, out, excluded)
            candidate.unlink()
            return MixedPrecision(Path(out), excluded, accuracy, fp32_accuracy)
        candidate.unlink()
    raise UserError(f"{fp32_onnx}: no mixed-precision model is within a drop of {max_drop}: with all "
                    f"{len(table.rows)} ranked nodes in float, the remaining quantized activations still lose "
                    f"{fp32_accuracy - accuracy:.4f}")
