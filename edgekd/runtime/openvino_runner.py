"""The ``openvino`` runtime: an OpenVINO IR (``.xml`` + ``.bin``) or an ONNX file compiled for a CPU, GPU or NPU.

Compiled with ``PERFORMANCE_HINT: LATENCY`` (one stream, one request: what an edge application does) and, on the CPU,
``INFERENCE_NUM_THREADS: threads``. OpenVINO picks its own inference precision per device (bf16 on CPUs with AMX,
fp16 on GPUs) unless ``inference_precision`` is given; :meth:`OpenVinoRunner.describe` reports the one in force.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekd.errors import UserError
from edgekd.runtime.base import Runner, first_line, register_runtime

_PRECISIONS = {"f32": "f32", "fp32": "f32", "f16": "f16", "fp16": "f16", "bf16": "bf16"}


@register_runtime("openvino", formats=("openvino", "onnx"), precisions=("fp32", "fp16", "int8"),
                  devices=("CPU", "GPU", "NPU"), options=("device", "inference_precision"))
class OpenVinoRunner(Runner):
    """OpenVINO. Options: ``device`` (``CPU``, ``GPU``, ``GPU.1``, ``NPU``; default ``CPU``) and
    ``inference_precision`` (``f32``/``fp32``, ``f16``/``fp16``, ``bf16``; default: the device's own choice)."""

    def _load(self, device: str = "CPU", inference_precision: str | None = None) -> None:
        import openvino as ov

        core = ov.Core()
        self.device = device.upper()
        if self.device.split(".")[0] not in {d.split(".")[0] for d in core.available_devices}:
            raise UserError(f"{self.path}: OpenVINO device {device!r} is not available here "
                            f"(available: {', '.join(core.available_devices)})")
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if self.threads is not None and self.device == "CPU":
            config["INFERENCE_NUM_THREADS"] = self.threads
        if inference_precision is not None:
            if inference_precision.lower() not in _PRECISIONS:
                raise UserError(f"runtime 'openvino': inference_precision {inference_precision!r} is not one of "
                                f"{', '.join(_PRECISIONS)}")
            config["INFERENCE_PRECISION_HINT"] = _PRECISIONS[inference_precision.lower()]
        try:
            model = core.read_model(str(self.path))
            self.compiled = core.compile_model(model, self.device, config)
        except RuntimeError as exc:
            raise UserError(f"{self.path}: OpenVINO cannot compile this model for {self.device} "
                            f"({first_line(exc)})") from exc
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
            raise UserError(f"{self.path}: OpenVINO rejected input of shape {tuple(x.shape)} "
                            f"({first_line(exc)})") from exc
        return self._request.get_output_tensor(0).data.copy()

    def describe(self) -> dict[str, Any]:
        import openvino as ov

        return {"runtime": self.name, "version": ov.get_version(), "device": self.device,
                "threads": self.compiled.get_property("INFERENCE_NUM_THREADS") if self.device == "CPU" else None,
                "inference_precision": self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
                "performance_hint": "LATENCY"}

    def close(self) -> None:
        self.__dict__.pop("_request", None)
        self.__dict__.pop("compiled", None)
