"""Per-layer INT8 sensitivity of an ONNX Runtime Q/DQ model: which quantized nodes cost accuracy.

Two measures per quantized node (Conv, Gemm, MatMul), named by the node of the pre-processed float graph
(:func:`~edgekd.quantize.ort.prepare_float`), which is what ``nodes_to_exclude`` refers to:

- **SQNR** of the node's output in the INT8 model against the float model's, on calibration data:
  ``SQNR = 10·log10(‖y‖² / ‖y − ŷ‖²)`` dB, with activations collected by ONNX Runtime's own debugging helpers
  (``onnxruntime.quantization.qdq_loss_debug``). That figure carries the error of every quantized node before it, so
  the node's own share is also given: with ``n = ‖y − ŷ‖² / ‖y‖²`` the noise-to-signal ratio of a tensor, the node
  adds ``n_out − n_in`` (``n_in`` of its data input as it reads it, after that input's Q/DQ; ``n_out`` of its
  output as its consumers read it, after the output's Q/DQ), reported as ``added SQNR = −10·log10(n_out − n_in)``
  dB (lower = the node adds more error). An activation quantizer thus counts for the node producing the tensor.
- **Accuracy gain** when that node alone is left in float (``quantize_static(..., nodes_to_exclude=[node])``), on a
  ranking subset of the validation split: the per-layer ranking of NNCF's accuracy-aware quantization
  (``nncf.quantize_with_accuracy_control``, which reverts the quantizer groups that cost the most accuracy; NNCF
  ranks them by a metric on a ranking subset of the validation data).

Rows are ranked most sensitive first: largest accuracy gain, ties broken by the lower added SQNR.

Use::

    table = ort_sensitivity(fp32_onnx, calibration, val_x, val_y, work_dir=tmp, per_channel=True,
                            symmetric_activations=False)
    table.rows[0].node   # the node to keep in float first
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.quantize._private import check_calibration, onnx_input, quiet, split_batches
from edgekd.quantize.ort import CALIBRATION_BATCH, ort_static_quantize, prepare_float

QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")
"""Op types whose quantization is ranked: the ones that carry weights and compute in INT8."""

SQNR_SAMPLES = 64
"""Calibration samples the activations are compared on, by default."""

RANKING_SAMPLES = 5000
"""Validation samples of the ranking subset, by default (the recipe's ``quantize.mixed.ranking_samples`` default).

A drop is the paired difference of the fp32 and INT8 accuracies on the same ``n`` images: an image counts ``+1``
where only fp32 is right, ``-1`` where only INT8 is, else ``0``, so the drop's standard error is about
``sqrt(f / n)`` with ``f`` the share of images whose correctness INT8 flips, not the unpaired ``sqrt(p (1 - p) / n)``.
With ``f`` up to 0.03 that is 0.25 points at 5000 images, a quarter of a 1-point ``max_drop``; at NNCF's
``ranking_subset_size`` default of 300 it is 1 point, as large as the drop it judges."""

_EPS = float(np.finfo(float).eps)

Pair = tuple[str, str]
"""A tensor's name in the float graph and the name of the tensor standing for it in the Q/DQ graph."""

KEEP_FLOAT = ("WeightBiasQuantization",)
"""ONNX Runtime graph transformers disabled when a model with nodes left in float is run: ``WeightBiasQuantization``
(onnxruntime >= 1.20, basic level) gives a float Conv/Gemm that reads a DequantizeLinear output Q/DQ weights of its
own (per tensor), so an excluded node would run in INT8 after all."""


@dataclass(frozen=True)
class LayerSensitivity:
    """One quantized node: its name and op type in the float graph, the SQNR (dB) of its output in the INT8 model,
    the SQNR of the error it adds itself, and the ranking-subset accuracy gained when it alone stays float."""

    node: str
    op_type: str
    sqnr_db: float
    added_sqnr_db: float
    accuracy_gain: float


@dataclass(frozen=True)
class SensitivityTable:
    """Accuracies on the ranking subset (float model, all-INT8 model) and the nodes, most sensitive first."""

    fp32_accuracy: float
    int8_accuracy: float
    ranking_samples: int
    rows: tuple[LayerSensitivity, ...]

    def by_sqnr(self) -> list[LayerSensitivity]:
        """The rows ordered by the error each node adds (lowest added SQNR first)."""
        return sorted(self.rows, key=lambda r: r.added_sqnr_db)


def db(signal: float, noise: float) -> float:
    """``10·log10(signal / noise)``, both energies floored at machine epsilon as ONNX Runtime's SQNR does."""
    return 10 * math.log10(max(signal, _EPS) / max(noise, _EPS))


def quantized_nodes(float_onnx: Path, qdq_onnx: Path) -> list[tuple[str, str]]:
    """``(name, op_type)`` of the float graph's Conv/Gemm/MatMul nodes that the Q/DQ graph quantizes (a node of the
    same name reading a DequantizeLinear output), in graph order."""
    import onnx

    qdq = onnx.load(str(qdq_onnx), load_external_data=False).graph
    dequantized = {o for n in qdq.node if n.op_type == "DequantizeLinear" for o in n.output}
    quantized = {n.name for n in qdq.node if n.op_type in QUANTIZED_OPS and any(i in dequantized for i in n.input)}
    graph = onnx.load(str(float_onnx), load_external_data=False).graph
    return [(n.name, n.op_type) for n in graph.node if n.op_type in QUANTIZED_OPS and n.name and n.name in quantized]


class _Feeds:
    """``{input_name: batch}`` dicts, iterated as ``collect_activations`` reads its input reader."""

    def __init__(self, input_name: str, batches: Sequence[np.ndarray]) -> None:
        self._feeds = [{input_name: b} for b in batches]

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self._feeds)


def _tensor_pairs(qdq_onnx: Path, nodes: Sequence[str]) -> dict[str, tuple[Pair, Pair]]:
    """Per node, ``(input, output)`` as ``(float-graph name, Q/DQ-graph name)`` pairs: the tensors the node reads and
    its consumers read in the Q/DQ graph (after the Q/DQ pair, if any) and the float tensors they stand for.

    ONNX Runtime's quantizer renames a graph output's producer output with a ``_QuantizeLinear_Input`` suffix and may
    drop a ReLU after a quantized node (the unsigned Q/DQ clips at 0), so names are read from the Q/DQ graph and
    traced through its QuantizeLinear/DequantizeLinear pairs."""
    import onnx
    from onnxruntime.quantization.quant_utils import QUANT_INPUT_SUFFIX

    graph = onnx.load(str(qdq_onnx), load_external_data=False).graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def float_name(tensor: str) -> str:
        return tensor[:-len(QUANT_INPUT_SUFFIX)] if tensor.endswith(QUANT_INPUT_SUFFIX) else tensor

    def read(tensor: str) -> Pair:  # a tensor as its consumers read it: after its Q/DQ pair, if quantized
        for q in consumers.get(tensor, []):
            if q.op_type == "QuantizeLinear":
                for dq in consumers.get(q.output[0], []):
                    if dq.op_type == "DequantizeLinear":
                        return float_name(tensor), dq.output[0]
        return float_name(tensor), tensor

    def source(tensor: str) -> Pair:  # a node's input: the float tensor behind the Q/DQ pair it reads from
        dq = producer.get(tensor)
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        return (float_name(q.input[0]), tensor) if q is not None and q.op_type == "QuantizeLinear" else (tensor, tensor)

    by_name = {n.name: n for n in graph.node}
    return {name: (source(by_name[name].input[0]), read(by_name[name].output[0])) for name in nodes}


def _energies(float_onnx: Path, qdq_onnx: Path, pairs: set[Pair], x: np.ndarray, work: Path
              ) -> dict[Pair, tuple[float, float]]:
    """``(float name, Q/DQ name) → (‖y‖², ‖y − ŷ‖²)`` over ``x``, ``y`` from the float model, ``ŷ`` from the Q/DQ
    model.

    Both models are augmented by ``modify_model_output_intermediate_tensors`` and run by ``collect_activations``
    (unoptimised graphs, so every tensor keeps its name), one chunk of samples at a time to bound memory."""
    from onnxruntime.quantization.qdq_loss_debug import collect_activations, modify_model_output_intermediate_tensors

    float_aug, qdq_aug = work / "float-augmented.onnx", work / "qdq-augmented.onnx"
    modify_model_output_intermediate_tensors(float_onnx, float_aug)
    modify_model_output_intermediate_tensors(qdq_onnx, qdq_aug)
    input_name, fixed_batch = onnx_input(float_onnx)
    sums = {pair: [0.0, 0.0] for pair in pairs}
    for batch in split_batches(x, fixed_batch, CALIBRATION_BATCH):
        expected = collect_activations(str(float_aug), _Feeds(input_name, [batch]))
        actual = collect_activations(str(qdq_aug), _Feeds(input_name, [batch]))
        for ref, seen in pairs:
            if ref in expected and seen in actual:
                y, y_hat = (np.concatenate(a).astype(np.float64).ravel() for a in (expected[ref], actual[seen]))
                sums[(ref, seen)][0] += float(y @ y)
                sums[(ref, seen)][1] += float((y - y_hat) @ (y - y_hat))
    return {pair: (signal, noise) for pair, (signal, noise) in sums.items()}


def top1_accuracy(model: Path, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of the ONNX model on the CPU provider, excluded nodes kept in float (:data:`KEEP_FLOAT`)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"], disabled_optimizers=list(KEEP_FLOAT))
    input_name, fixed_batch = onnx_input(model)
    batches = split_batches(x, fixed_batch, 64)
    predicted = np.concatenate([session.run(None, {input_name: b})[0].argmax(axis=1) for b in batches])
    return float((predicted == np.asarray(y)[:len(predicted)]).mean())


def ort_sensitivity(fp32_onnx: Path, calibration: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, *,
                    work_dir: Path, sqnr_samples: int = SQNR_SAMPLES, ranking_samples: int = RANKING_SAMPLES,
                    **options: Any) -> SensitivityTable:
    """The sensitivity table of the INT8 model ``ort_static_quantize(fp32_onnx, ..., **options)``.

    Args:
        fp32_onnx: a deployable fp32 ONNX model (normalisation inside, one input).
        calibration: float32 NCHW train samples in [0, 1]; all calibrate every INT8 model, the first
            ``sqnr_samples`` are compared for SQNR.
        val_x, val_y: validation samples and labels; the first ``ranking_samples`` form the ranking subset.
        work_dir: a folder for the intermediate models (pre-processed, quantized, augmented).
        options: :func:`~edgekd.quantize.ort.ort_static_quantize` options (``per_channel``,
            ``symmetric_activations``, ``calibrate_method``, ...); the same for every model.
    """
    check_calibration(calibration)
    check_calibration(val_x, "validation")
    if len(val_x) != len(val_y):
        raise ValueError(f"{len(val_x)} validation samples but {len(val_y)} labels")
    work_dir.mkdir(parents=True, exist_ok=True)
    prepared = prepare_float(fp32_onnx, work_dir / "float.onnx")
    int8 = ort_static_quantize(fp32_onnx, work_dir / "int8.onnx", calibration, **options)
    nodes = quantized_nodes(prepared, int8)
    pairs = _tensor_pairs(int8, [name for name, _ in nodes])
    with quiet():
        energies = _energies(prepared, int8, {p for both in pairs.values() for p in both}, calibration[:sqnr_samples],
                             work_dir)
    rank_x, rank_y = val_x[:ranking_samples], np.asarray(val_y)[:ranking_samples]
    int8_accuracy = top1_accuracy(int8, rank_x, rank_y)
    rows = []
    for name, op_type in nodes:
        (in_signal, in_noise), (signal, noise) = (energies[p] for p in pairs[name])
        added = noise / max(signal, _EPS) - in_noise / max(in_signal, _EPS)
        reverted = ort_static_quantize(fp32_onnx, work_dir / "reverted.onnx", calibration, nodes_to_exclude=[name],
                                       **options)
        rows.append(LayerSensitivity(name, op_type, sqnr_db=db(signal, noise), added_sqnr_db=db(1.0, added),
                                     accuracy_gain=top1_accuracy(reverted, rank_x, rank_y) - int8_accuracy))
    rows.sort(key=lambda r: (-r.accuracy_gain, r.added_sqnr_db))
    return SensitivityTable(fp32_accuracy=top1_accuracy(prepared, rank_x, rank_y), int8_accuracy=int8_accuracy,
                            ranking_samples=len(rank_x), rows=tuple(rows))
