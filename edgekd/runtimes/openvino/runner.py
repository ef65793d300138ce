"""The ``openvino`` runtime: an OpenVINO IR (``.xml`` + ``.bin``) or an ONNX file compiled for a CPU, GPU or NPU.

Compiled with ``PERFORMANCE_HINT: LATENCY`` (one stream, one request: what an edge application does), on the CPU
``INFERENCE_NUM_THREADS: threads``, and always an explicit ``INFERENCE_PRECISION_HINT`` (default ``f32``): left to
itself OpenVINO computes in bf16 on CPUs with AVX-512 BF16 or AMX and in fp16 on GPUs, whatever the artifact's label
(see :mod:`edgekd.runtime.precision`). :meth:`OpenVinoRunner.describe` reports the precision in force as compiled.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekd.errors import RuntimeFailure, UserError
from edgekd.runtime.base import Bound, Runner, first_line, register_runtime

_PRECISIONS = {"f32": "f32", "fp32": "f32", "f16": "f16", "fp16": "f16", "bf16": "bf16"}


#: layers of OpenVINO's runtime graph that only move or hold data (their precision says nothing about the compute)
_DATA_LAYERS = frozenset({"Const", "Input", "Output", "Parameter", "Result", "Reorder", "Reshape"})


def layer_precisions(compiled: Any) -> dict[str, int]:
    """How many compute layers of a compiled model have each ``runtimePrecision`` in OpenVINO's runtime graph (e.g.
    ``{"bf16": 10, "f32": 1}``): what the plugin actually scheduled, not what was asked for. For an IR with fp16
    weights on a CPU without fp16 arithmetic it names the weights' precision (``f16``) while the compute is f32, as
    ``INFERENCE_PRECISION_HINT`` says."""
    counts: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) not in _DATA_LAYERS:
            precision = info["runtimePrecision"].astype(str)
            counts[precision] = counts.get(precision, 0) + 1
    return dict(sorted(counts.items()))


def compile_config(device: str, threads: int | None, inference_precision: str) -> dict[str, Any]:
    """The ``compile_model`` config of every edgekd OpenVINO run: ``PERFORMANCE_HINT: LATENCY``, the CPU's
    ``INFERENCE_NUM_THREADS`` and the explicit ``INFERENCE_PRECISION_HINT``."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
    if threads is not None and device.upper() == "CPU":
        config["INFERENCE_NUM_THREADS"] = threads
    if inference_precision.lower() not in _PRECISIONS:
        raise UserError(f"runtime 'openvino': inference_precision {inference_precision!r} is not one of "
                        f"{', '.join(_PRECISIONS)}")
    config["INFERENCE_PRECISION_HINT"] = _PRECISIONS[inference_precision.lower()]
    return config


@register_runtime("openvino", options=("device", "inference_precision"))
class OpenVinoRunner(Runner):
    """OpenVINO. Options: ``device`` (``CPU``, ``GPU``, ``GPU.1``, ``NPU``; default ``CPU``) and
    ``inference_precision`` (``f32``/``fp32``, ``f16``/``fp16``, ``bf16``; default ``f32``, never the device's own
    choice)."""

    def _load(self, device: str = "CPU", inference_precision: str = "f32") -> None:
        import openvino as ov

        core = ov.Core()
        self.device = device.upper()
        if self.device.split(".")[0] not in {d.split(".")[0] for d in core.available_devices}:
            raise UserError(f"{self.path}: OpenVINO device {device!r} is not available here "
                            f"(available: {', '.join(core.available_devices)})")
        config = compile_config(self.device, self.threads, inference_precision)
        try:
            model = core.read_model(str(self.path))
            self.compiled = core.compile_model(model, self.device, config)
        except RuntimeError as exc:
            raise UserError(f"{self.path}: OpenVINO cannot compile this model for {self.device} "
                            f"({first_line(exc)})") from exc
        compiled_hint = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        requested = config["INFERENCE_PRECISION_HINT"]
        if compiled_hint != requested:  # e.g. bf16 asked of a CPU without BF16: OpenVINO would quietly use f32
            raise UserError(f"{self.path}: OpenVINO {self.device} compiled in {compiled_hint}, not the requested "
                            f"{requested} (this device cannot compute in it)")
        port = self.compiled.input(0)
        self._shape = tuple(None if d.is_dynamic else d.get_length() for d in port.partial_shape)
        self._request = self.compiled.create_infer_request()

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        return self._shape

    def _run(self, x: np.ndarray) -> np.ndarray:
        try:
            self._request.infer({0: x})
        except RuntimeError as exc:
            raise RuntimeFailure(f"{self.path}: OpenVINO failed on a batch of shape {tuple(x.shape)} "
                                 f"({first_line(exc)})") from exc
        return self._request.get_output_tensor(0).data.copy()

    def bind(self, x: np.ndarray) -> Bound:
        """A request of its own whose input tensor shares ``x``'s memory, set once; each call is the binding's
        synchronous ``infer({}, share_outputs=True)``, the C++ call under ``InferRequest.infer()`` without its
        per-call input dispatch and output copies; the output is read in place; ``runtime_latency`` is OpenVINO's
        own ``request.latency`` (ms)."""
        import openvino as ov

        self._check_input(x)
        x = np.ascontiguousarray(x)
        request = self.compiled.create_infer_request()
        request.set_input_tensor(ov.Tensor(x, shared_memory=True))
        native = type(request).__mro__[1].infer  # type: ignore[attr-defined]  # openvino's pybind11 base class
        inputs: dict[str, Any] = {}

        def call(_shared: np.ndarray = x) -> None:  # keeps x alive: the tensor shares its memory
            native(request, inputs, True, False)

        call()
        return Bound(call, lambda: request.get_output_tensor(0).data, lambda: request.latency)

    def describe(self) -> dict[str, Any]:
        import openvino as ov

        return {"runtime": self.name, "version": ov.get_version(), "device": self.device,
                "threads": self.compiled.get_property("INFERENCE_NUM_THREADS") if self.device == "CPU" else None,
                "inference_precision": self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
                "layer_precisions": layer_precisions(self.compiled), "performance_hint": "LATENCY"}

    def close(self) -> None:
        self.__dict__.pop("_request", None)
        self.__dict__.pop("compiled", None)
