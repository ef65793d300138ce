"""The ``openvino`` runtime: an OpenVINO IR (``.xml`` + ``.bin``) or an ONNX file compiled for a CPU, GPU or NPU.

Compiled with ``PERFORMANCE_HINT: LATENCY`` (one stream, one request: what an edge application does), on the CPU
``INFERENCE_NUM_THREADS: threads``, and always an explicit ``INFERENCE_PRECISION_HINT`` (default ``f32``): left to
itself OpenVINO computes in bf16 on CPUs with AVX-512 BF16 or AMX and in fp16 on GPUs, whatever the artifact's label
(see :mod:`edgekd.runtime.precision`). :meth:`OpenVinoRunner.describe` reports the precision in force as compiled.
The config and the compile check are :mod:`edgekd.runtimes.openvino.session`'s, shared with the device runner.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekd.errors import RuntimeFailure, UserError
from edgekd.runtime.base import Bound, Runner, first_line, register_runtime
from edgekd.runtimes.openvino import session
from edgekd.runtimes.openvino.session import layer_precisions


def compile_config(device: str, threads: int | None, inference_precision: str) -> dict[str, Any]:
    """:func:`edgekd.runtimes.openvino.session.compile_config`, an unknown precision a UserError."""
    try:
        config: dict[str, Any] = session.compile_config(device, threads, inference_precision)
    except ValueError as exc:
        raise UserError(f"runtime 'openvino': {exc}") from None
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
        except RuntimeError as exc:
            raise UserError(f"{self.path}: OpenVINO cannot read this model ({first_line(exc)})") from exc
        try:
            self.compiled = session.compile_model(core, model, self.device, config)
        except session.LoadError as exc:
            raise UserError(f"{self.path}: {exc}") from exc
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
        infer = session.sync_infer(request)

        def call(_shared: np.ndarray = x) -> None:  # keeps x alive: the tensor shares its memory
            infer()

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
