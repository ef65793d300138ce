"""The ``onnxruntime`` runtime: an ONNX artifact in ONNX Runtime with explicitly chosen execution providers.

ONNX Runtime silently falls back to the CPU provider when a requested provider is missing or fails to start; this
runner refuses instead (a UserError naming the missing provider), so a measured number is never from the wrong EP.
The session itself is set up by :func:`edgekd.runtimes.onnxruntime.session.create_session`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import RuntimeFailure, UserError
from edgekd.runtime.base import Bound, Runner, first_line, register_runtime
from edgekd.runtimes.onnxruntime.session import LoadError, create_session, input_dtype

PROVIDER_ALIASES: dict[str, str] = {
    provider.removesuffix("ExecutionProvider").lower(): provider
    for provider in ("CPUExecutionProvider", "XnnpackExecutionProvider", "CUDAExecutionProvider",
                     "TensorrtExecutionProvider", "OpenVINOExecutionProvider")
}
"""Short provider names accepted in device profiles (the provider name without ``ExecutionProvider``, lower case:
``cpu``, ``xnnpack``, ``cuda``, ...) → ONNX Runtime provider names."""

def resolve_providers(requested: Sequence[str]) -> list[str]:
    """Full ONNX Runtime names of ``requested`` (short or full names), or a UserError naming a missing provider."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    resolved = [PROVIDER_ALIASES.get(p.lower(), p) for p in requested]
    missing = [p for p in resolved if p not in available]
    if missing:
        raise UserError(f"ONNX Runtime execution provider {', '.join(missing)} is not available in onnxruntime "
                        f"{ort.__version__} (available: {', '.join(available)}); install the matching onnxruntime "
                        f"package or change the device profile's providers")
    return resolved


def graph_precision(path: Path) -> str:
    """What ONNX Runtime computes in for this graph (it runs the graph's own types and never down-casts): ``int8+f32``
    for a Q/DQ graph (quantized operators in int8, the rest in f32), ``f16`` where it holds float16 tensors, else
    ``f32``."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    if any(node.op_type in {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger"} for node in graph.node):
        return "int8+f32"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer):
        return "f16"
    return "f32"


@register_runtime("onnxruntime", options=("providers", "provider_options", "spinning"))
class OrtRunner(Runner):
    """ONNX Runtime with ``graph_optimization_level=ORT_ENABLE_ALL`` and ``intra_op_num_threads=threads``.

    Options: ``providers`` (list, priority order, short or full names; default ``["CPUExecutionProvider"]``) and
    ``provider_options`` (provider name → its option dict, e.g. ``{"TensorrtExecutionProvider":
    {"trt_fp16_enable": "1"}}``), and ``spinning`` (default true: idle intra-op threads spin, ONNX Runtime's
    default; false for sessions timed interleaved with another).
    """

    def _load(self, providers: Sequence[str] = ("CPUExecutionProvider",),
              provider_options: Mapping[str, Mapping[str, Any]] | None = None, spinning: bool = True) -> None:
        self._providers = resolve_providers(providers)
        per_provider = {PROVIDER_ALIASES.get(k.lower(), k): dict(v) for k, v in (provider_options or {}).items()}
        stray = sorted(set(per_provider) - set(self._providers))
        if stray:
            raise UserError(f"{self.path}: provider_options given for {', '.join(stray)}, which is not in providers")
        try:
            self.session = create_session(self.path, self.threads, self._providers, per_provider,
                                          spinning=spinning)
        except LoadError as exc:
            raise UserError(f"{self.path}: {exc}") from exc
        node = self.session.get_inputs()[0]
        self._input_name = node.name
        self._input_dtype = input_dtype(self.session)
        if self._input_dtype is None:
            raise UserError(f"{self.path}: input {node.name!r} has type {node.type}; expected a float tensor")
        self._shape = tuple(d if isinstance(d, int) else None for d in node.shape)
        self._output_name = self.session.get_outputs()[0].name
        self._precision = graph_precision(self.path)

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        return self._shape

    def _run(self, x: np.ndarray) -> np.ndarray:
        try:
            (out,) = self.session.run([self._output_name], {self._input_name: x.astype(self._input_dtype, copy=False)})
        except Exception as exc:  # InvalidArgument / Fail from the native runtime
            raise RuntimeFailure(f"{self.path}: ONNX Runtime failed on a batch of shape {tuple(x.shape)} "
                                 f"({first_line(exc)})") from exc
        return out

    def bind(self, x: np.ndarray) -> Bound:
        """ONNX Runtime I/O binding: ``x`` bound once as the input, a preallocated array as the output (filled in
        place by ``run_with_iobinding``)."""
        self._check_input(x)
        x = np.ascontiguousarray(x.astype(self._input_dtype, copy=False))
        out = self._run(x)  # the output's shape and type, from one ordinary call
        binding = self.session.io_binding()
        binding.bind_cpu_input(self._input_name, x)
        binding.bind_output(self._output_name, "cpu", 0, out.dtype, list(out.shape), out.ctypes.data)
        session = self.session

        def call() -> None:
            session.run_with_iobinding(binding)

        return Bound(call, lambda: out)

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"runtime": self.name, "version": ort.__version__, "providers": self.session.get_providers(),
                "threads": self.threads, "graph_optimization_level": "ORT_ENABLE_ALL",
                "inference_precision": self._precision}

    def close(self) -> None:
        self.__dict__.pop("session", None)
