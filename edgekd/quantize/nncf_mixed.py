"""Mixed-precision INT8 for OpenVINO: NNCF PTQ with the most sensitive nodes left in float (``nncf.IgnoredScope``).

The ranking is ONNX Runtime's (:func:`~edgekd.quantize.sensitivity.ort_sensitivity`, nodes named in the
pre-processed float ONNX graph). That graph is converted to an IR, whose compute op of an ONNX ``Conv``/``Gemm`` node
``X`` is the ``Convolution``/``GroupConvolution``/``MatMul`` named ``X`` (no bias) or ``X/WithoutBiases`` (the bias
becomes an ``Add`` of its own); those op names are NNCF's ``IgnoredScope(names=...)``. The number of float nodes is
chosen as for ONNX Runtime (:func:`~edgekd.quantize.mixed.search_float_nodes`), each candidate IR scored with OpenVINO
on the CPU in f32, as NNCF's accuracy control scores its candidates. The IR keeps no quantizer on the float nodes, so
OpenVINO computes them in float.

Use::

    mixed = nncf_mixed_precision(fp32_onnx, out / "model.xml", calibration, val_x, val_y, table, max_drop=0.01,
                                 work_dir=tmp, target_device="CPU")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import UserError
from edgekd.quantize._private import split_batches
from edgekd.quantize.mixed import MixedPrecision, search_float_nodes
from edgekd.quantize.nncf_quantize import nncf_ptq
from edgekd.quantize.ort import prepare_float
from edgekd.quantize.sensitivity import SensitivityTable

COMPUTE_OPS = ("Convolution", "GroupConvolution", "MatMul")
"""OpenVINO op types that carry an ONNX Conv/Gemm node's weights."""

BIAS_SUFFIX = "/WithoutBiases"
"""The suffix OpenVINO's ONNX frontend gives the compute op of a node whose bias it splits off."""


def ir_names(ir: Path, nodes: Sequence[str]) -> dict[str, str]:
    """ONNX node name → the friendly name of the IR op computing it (see the module docstring)."""
    import openvino as ov

    ops = {op.get_friendly_name() for op in ov.Core().read_model(str(ir)).get_ops()
           if op.get_type_name() in COMPUTE_OPS}
    found = {}
    for node in nodes:
        names = [n for n in (node + BIAS_SUFFIX, node) if n in ops]
        if not names:
            raise UserError(f"{ir}: no {'/'.join(COMPUTE_OPS)} op stands for the ONNX node {node!r}")
        found[node] = names[0]
    return found


def openvino_accuracy(ir: Path, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of the IR compiled for the CPU in f32."""
    import openvino as ov

    model = ov.Core().read_model(str(ir))
    dim = model.inputs[0].partial_shape[0]
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    batches = split_batches(x, None if dim.is_dynamic else dim.get_length(), 64)
    predicted = np.concatenate([np.asarray(compiled(b)[0]).argmax(axis=1) for b in batches])
    return float((predicted == np.asarray(y)[:len(predicted)]).mean())


def _discard(xml: Path) -> None:
    xml.unlink()
    xml.with_suffix(".bin").unlink(missing_ok=True)


def nncf_mixed_precision(fp32_onnx: Path, out: Path, calibration: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                         table: SensitivityTable, *, work_dir: Path, max_drop: float | None = None,
                         k: int | None = None, max_excluded: int | None = None, **options: Any) -> MixedPrecision:
    """Write the INT8 IR with the ``k`` most sensitive nodes of ``table`` in float to ``out`` (``.xml``).

    Args:
        fp32_onnx: the deployable fp32 ONNX model ``table`` was measured on.
        out: the ``.xml`` file to write (its ``.bin`` beside it).
        calibration, val_x, val_y, table, work_dir, max_drop, k, max_excluded: as for
            :func:`~edgekd.quantize.mixed.ort_mixed_precision`.
        options: :func:`~edgekd.quantize.nncf_quantize.nncf_ptq` options (``subset_size``, ``preset``,
            ``fast_bias_correction``, ``target_device``).
    """
    import openvino as ov

    from edgekd.runtimes.openvino.exporter import export_openvino, save_openvino_ir

    if Path(out).suffix != ".xml":
        raise UserError(f"{out}: the mixed-precision IR must be a .xml file")
    if len(val_x) != len(val_y):
        raise ValueError(f"{len(val_x)} validation samples but {len(val_y)} labels")
    work_dir.mkdir(parents=True, exist_ok=True)
    ir = export_openvino(prepare_float(fp32_onnx, work_dir / "float.onnx"), work_dir / "float.xml",
                         compress_to_fp16=False)
    names = ir_names(ir, [r.node for r in table.rows])

    def candidate(excluded: tuple[str, ...]) -> Path:
        return nncf_ptq(ir, work_dir / f"mixed-{len(excluded)}.xml", calibration,
                        ignored_names=[names[n] for n in excluded], **options)

    chosen = search_float_nodes(
        fp32_onnx, [r.node for r in table.rows], candidate, lambda path: openvino_accuracy(path, val_x, val_y),
        lambda: openvino_accuracy(ir, val_x, val_y), max_drop=max_drop, k=k, max_excluded=max_excluded,
        discard=_discard)
    save_openvino_ir(ov.Core().read_model(str(chosen.path)), out, compress_to_fp16=False)
    _discard(chosen.path)
    return MixedPrecision(Path(out), chosen.excluded, chosen.accuracy, chosen.fp32_accuracy, chosen.tried)
