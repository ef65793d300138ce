"""Post-training INT8 quantization with NNCF (``nncf.quantize``), plain or under an accuracy budget, for ONNX and
OpenVINO artifacts.

NNCF's PTQ pipeline (Kozlov et al., "Neural Network Compression Framework for fast model inference", 2020, and the
NNCF documentation): min-max statistics over ``subset_size`` calibration samples place quantizers as the target
device's hardware config prescribes, then (fast) bias correction restores each layer's mean output. An ONNX model
comes back as a QDQ ONNX graph that ONNX Runtime runs; an OpenVINO model as an IR with ``FakeQuantize`` and INT8
weights. ``quantize_with_accuracy_control`` then reverts the quantizers that cost the most accuracy, most harmful
first (ranked per validation sample), until the drop is at most ``max_drop``.

Recipe snippet::

    quantize:
      engines: [nncf]
      nncf: {preset: performance, subset_size: 300, fast_bias_correction: true}   # preset: performance | mixed
      accuracy_control: {max_drop: 0.01}                                            # OpenVINO targets
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgekd._atomic import atomic_path
from edgekd.errors import RuntimeFailure, UserError
from edgekd.quantize._private import check_calibration, nncf_options, onnx_input, quiet, split_batches

Preset = Literal["performance", "mixed"]
TargetDevice = Literal["ANY", "CPU", "GPU", "NPU"]


def _open(model_path: Path) -> tuple[Any, str, int | None]:
    """The model (``onnx.ModelProto`` or ``ov.Model``), its input name and its static batch (``None``: dynamic)."""
    suffix = Path(model_path).suffix.lower()
    if suffix == ".onnx":
        import onnx

        name, batch = onnx_input(model_path)
        return onnx.load(str(model_path)), name, batch
    if suffix == ".xml":
        import openvino as ov

        model = ov.Core().read_model(str(model_path))
        dim = model.inputs[0].partial_shape[0]
        return model, model.inputs[0].get_any_name(), None if dim.is_dynamic else dim.get_length()
    raise UserError(f"{model_path}: NNCF quantizes ONNX (.onnx) or OpenVINO IR (.xml) models")


def _save(model: Any, source: Path, out: Path) -> Path:
    """Write the quantized ``model`` atomically in the format of ``source``."""
    if Path(out).suffix.lower() != Path(source).suffix.lower():
        raise UserError(f"{out}: the quantized model keeps the format of {source}; use suffix {Path(source).suffix}")
    if Path(source).suffix.lower() == ".xml":
        from edgekd.runtimes.openvino.exporter import save_openvino_ir

        return save_openvino_ir(model, out, compress_to_fp16=False)
    import onnx

    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
        onnx.checker.check_model(str(tmp))
    return Path(out)


def _calibration_dataset(model_path: Path, input_name: str, fixed_batch: int | None, calibration: np.ndarray) -> Any:
    import nncf

    batches = split_batches(check_calibration(calibration), fixed_batch)
    if Path(model_path).suffix.lower() == ".onnx":
        return nncf.Dataset(batches, lambda batch: {input_name: batch})
    return nncf.Dataset(batches)


def nncf_ptq(model_path: Path, out: Path, calibration: np.ndarray, *, subset_size: int = 300,
             preset: Preset = "performance", fast_bias_correction: bool = True,
             target_device: TargetDevice = "ANY", ignored_names: Sequence[str] = ()) -> Path:
    """Quantize the fp32 ONNX or OpenVINO model at ``model_path`` to INT8 at ``out`` (same format).

    Args:
        calibration: float32 NCHW samples in [0, 1] from the train split, fed one at a time (NNCF's advice).
        subset_size: how many calibration samples NNCF uses for statistics.
        preset: ``performance`` (symmetric quantizers) or ``mixed`` (asymmetric activations).
        fast_bias_correction: the fast bias correction (``False``: the slower, more exact one).
        target_device: the hardware config NNCF follows when placing quantizers.
        ignored_names: nodes left in float (``nncf.IgnoredScope(names=...)``: NNCF's graph names, the ONNX node
            names or the OpenVINO ops' friendly names).
    """
    import nncf

    model, input_name, fixed_batch = _open(model_path)
    dataset = _calibration_dataset(model_path, input_name, fixed_batch, calibration)
    ignored = {"ignored_scope": nncf.IgnoredScope(names=list(ignored_names))} if ignored_names else {}
    with quiet():
        quantized = nncf.quantize(model, dataset, subset_size=subset_size, fast_bias_correction=fast_bias_correction,
                                  **nncf_options(preset, target_device), **ignored)
    return _save(quantized, model_path, out)


def _logits_fn(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A batch → logits function for what NNCF hands a validation function: an ``ov.CompiledModel`` (OpenVINO) or
    an ``onnx.ModelProto`` (ONNX)."""
    import onnx

    if isinstance(model, onnx.ModelProto):
        import onnxruntime as ort

        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]
    # NNCF compiles the models it validates with INFERENCE_PRECISION_HINT f32 (use_fp32_precision); were that to
    # change, accuracy control would judge quantizers by bf16 accuracy on BF16 CPUs: refuse rather than mis-measure
    compiled = model.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    if compiled != "f32":
        raise RuntimeFailure(f"NNCF compiled the validation model in {compiled}, not f32; accuracy control would "
                             "measure another precision than the artifact's")
    return lambda x: model(x)[0]


def top1_validation(model: Any, items: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[float, list[float]]:
    """NNCF validation function: top-1 accuracy over ``items`` and the accuracy of each item (for the ranking)."""
    logits = _logits_fn(model)
    per_item = [float(np.mean(np.asarray(logits(x)).argmax(axis=1) == y)) for x, y in items]
    return float(np.mean(per_item)), per_item


def nncf_ptq_with_accuracy_control(model_path: Path, out: Path, calibration: np.ndarray, validation_x: np.ndarray,
                                   validation_y: np.ndarray, *, max_drop: float = 0.01, subset_size: int = 300,
                                   preset: Preset = "performance", fast_bias_correction: bool = True,
                                   target_device: TargetDevice = "ANY") -> Path:
    """:func:`nncf_ptq`, then revert quantizers until the top-1 accuracy drop on the validation samples is at most
    ``max_drop`` (absolute, 0–1; 0.01 = one point).

    The validation function is edgekd's own (:func:`top1_validation`): NNCF ranks quantizers by calling it on
    subsets of the validation items, so it must score exactly the items it is given. Validation samples come from
    a split held out from train, never from test.
    """
    import nncf

    if not 0 <= max_drop < 1:
        raise ValueError(f"max_drop is an absolute accuracy drop in [0, 1), got {max_drop}")
    if len(validation_x) != len(validation_y):
        raise ValueError(f"{len(validation_x)} validation samples but {len(validation_y)} labels")
    model, input_name, fixed_batch = _open(model_path)
    dataset = _calibration_dataset(model_path, input_name, fixed_batch, calibration)
    x_items = split_batches(check_calibration(validation_x, "validation"), fixed_batch)
    step = len(x_items[0])
    items = [(x, np.asarray(validation_y[i * step:(i + 1) * step])) for i, x in enumerate(x_items)]
    with quiet():
        quantized = nncf.quantize_with_accuracy_control(
            model, dataset, nncf.Dataset(items), top1_validation, max_drop=max_drop,
            drop_type=nncf.DropType.ABSOLUTE, subset_size=subset_size, fast_bias_correction=fast_bias_correction,
            **nncf_options(preset, target_device))
    return _save(quantized, model_path, out)
