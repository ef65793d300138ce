"""The ``tensorrt`` runtime: a serialized TensorRT engine (``.engine`` / ``.plan``) run on an NVIDIA GPU.

Input and output live in torch CUDA tensors (torch is an edgekd dependency; a CUDA build of it is needed here), bound
by address with the name-based tensor API of TensorRT 10 and 11 (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``) on a private CUDA stream. A call's time therefore includes the host→device and device→host
copies, as an application pays them (trtexec reports those separately as H2D/D2H latency).

Engine files are executable artifacts (compiled CUDA kernels): open only engines you built.

What ran is read back from the engine itself (:mod:`edgekd.runtimes.tensorrt.session`): ``layer_precisions``
lists the data types of every layer's inputs and outputs as the engine inspector reports them (``IEngineInspector``
JSON of an engine built with ``ProfilingVerbosity.DETAILED``), and ``precision_counts`` sums them up for
:meth:`TensorRtRunner.describe`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekd.errors import UserError
from edgekd.runtime.base import Runner, register_runtime
from edgekd.runtimes.tensorrt.session import (  # noqa: F401  (re-exported: the inspector readers)
    inspector_layers,
    layer_precisions,
    precision_counts,
    tensor_datatype,
    torch_dtype,
)

TENSORRT_MISSING = "TensorRT is not installed (needs an NVIDIA GPU and NVIDIA's package index)"

#: the oldest TensorRT edgekd builds and runs engines with (the name-based tensor API; JetPack 6.1 ships 10.3)
MIN_TENSORRT_MAJOR = 10


def tensorrt_problem() -> str | None:
    """Why TensorRT engines cannot be built or run here, in one line; None when they can.

    Needs the ``tensorrt`` package at version >= :data:`MIN_TENSORRT_MAJOR` and a CUDA device that torch sees (the
    builder times kernels on the GPU; the runner keeps its tensors in torch CUDA memory).
    """
    try:
        import tensorrt as trt
    except (ImportError, OSError):  # OSError: the package is there but libnvinfer is not
        return TENSORRT_MISSING
    major = int(trt.__version__.split(".")[0])
    if major < MIN_TENSORRT_MAJOR:
        return (f"TensorRT {trt.__version__} is too old: edgekd needs TensorRT >= {MIN_TENSORRT_MAJOR} "
                f"(JetPack 6.1 or later on a Jetson)")
    import torch

    if not torch.cuda.is_available():
        return (f"TensorRT {trt.__version__} is installed but torch sees no CUDA device: engines are built and run "
                f"on an NVIDIA GPU, with a CUDA build of torch")
    return None


@register_runtime("tensorrt", options=("device",))
class TensorRtRunner(Runner):
    """TensorRT. Option: ``device`` (``cuda`` or ``cuda:N``; default ``cuda:0``). ``threads`` does not apply to a
    GPU and must be left unset."""

    def _load(self, device: str = "cuda:0") -> None:
        if self.threads is not None:
            raise UserError(f"runtime 'tensorrt': threads={self.threads} does not apply to a GPU runtime")
        if not device.lower().startswith("cuda"):
            raise UserError(f"runtime 'tensorrt': device must be cuda or cuda:N, got {device!r}")
        if (problem := tensorrt_problem()) is not None:
            raise UserError(f"{self.path}: {problem}")
        import tensorrt as trt
        import torch

        self.device = torch.device(device.lower())
        self._logger = trt.Logger(trt.Logger.WARNING)
        with torch.cuda.device(self.device):
            self.engine = trt.Runtime(self._logger).deserialize_cuda_engine(self.path.read_bytes())
            if self.engine is None:
                raise UserError(f"{self.path}: TensorRT {trt.__version__} cannot load this engine (engines only load "
                                f"on the GPU architecture and TensorRT version that built them)")
            self.context = self.engine.create_execution_context()
            self.stream = torch.cuda.Stream(self.device)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise UserError(f"{self.path}: expected one input and one output, found {inputs} and {outputs}")
        (self._input,), (self._output,) = inputs, outputs
        self._shape = tuple(None if d == -1 else int(d) for d in self.engine.get_tensor_shape(self._input))
        self._max_batch = (int(self.engine.get_tensor_profile_shape(self._input, 0)[2][0])
                           if self._shape[0] is None else self._shape[0])
        self._dtypes = {n: torch_dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        return self._shape

    def _run(self, x: np.ndarray) -> np.ndarray:
        import torch

        if len(x) > self._max_batch:
            raise UserError(f"{self.path}: batch {len(x)} exceeds the engine's largest batch {self._max_batch}")
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            inp = torch.from_numpy(x).to(self.device).to(self._dtypes[self._input]).contiguous()
            if not self.context.set_input_shape(self._input, tuple(x.shape)):
                raise UserError(f"{self.path}: TensorRT rejected input shape {tuple(x.shape)}")
            out = torch.empty(tuple(self.context.get_tensor_shape(self._output)), dtype=self._dtypes[self._output],
                              device=self.device)
            self.context.set_tensor_address(self._input, inp.data_ptr())
            self.context.set_tensor_address(self._output, out.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise UserError(f"{self.path}: TensorRT failed to run the engine on input {tuple(x.shape)}")
            self.stream.synchronize()
        return out.float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        import tensorrt as trt
        import torch

        major, minor = torch.cuda.get_device_capability(self.device)
        return {"runtime": self.name, "version": trt.__version__, "device": str(self.device),
                "gpu": torch.cuda.get_device_name(self.device), "compute_capability": f"{major}.{minor}",
                "threads": None, "max_batch": self._max_batch,
                "layer_precisions": precision_counts(layer_precisions(self.engine)),
                "inference_precision": "per layer, as built (see layer_precisions)"}

    def close(self) -> None:
        for attribute in ("context", "engine", "stream"):
            self.__dict__.pop(attribute, None)

