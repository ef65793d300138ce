"""The device runner's TensorRT session, and the reading of an engine's layer precisions that the Runner shares.

Imports only numpy, TensorRT (>= 10) and torch (for CUDA buffers and the stream; torch is what a Jetson or a CUDA
host running edgekd has), and those only when a session opens, so the device runner copies this file beside itself
onto a board. The name-based tensor API of TensorRT 10 and 11: ``set_input_shape``, ``set_tensor_address``,
``execute_async_v3`` on a private CUDA stream. Each timed call copies the input host→device, runs the engine and
copies the output device→host, then synchronizes the stream: the latency an application pays (trtexec reports the
transfers separately as H2D/D2H, and TensorRT 11's trtexec skips them by default).

Engine files are executable artifacts (compiled CUDA kernels): open only engines you built.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np

#: data type words in the inspector's tensor descriptions (TensorRT 10's "Format/Datatype": "Row major linear FP32",
#: "Channel major FP16 format where channel % 8 == 0", "... Int8 format"; TensorRT 11's "DataType": "Float", "Half",
#: "BFloat16", "Int8")
_DATATYPES = {"fp32": "fp32", "float": "fp32", "fp16": "fp16", "half": "fp16", "bf16": "bf16", "bfloat16": "bf16",
              "int8": "int8", "fp8": "fp8", "int4": "int4", "fp4": "fp4"}
_DATATYPE = re.compile(r"\b(" + "|".join(_DATATYPES) + r")\b", re.IGNORECASE)
_ORDER = ["fp4", "int4", "fp8", "int8", "fp16", "bf16", "fp32"]


class LoadError(Exception):
    """TensorRT cannot open the engine here (the device runner reports kind ``load``)."""


def inspector_layers(info_json):
    """``{name, type, inputs, outputs, tactic}`` for every layer of the engine inspector's JSON: the float or
    quantized data types of the layer's input and output tensors (integer index and shape tensors left out) and the
    kernel TensorRT chose. Each tensor's type is read by :func:`tensor_datatype`, in either schema."""
    info = json.loads(info_json)

    def kind(tensor):
        found = _DATATYPE.search(tensor_datatype(tensor))
        return _DATATYPES[found.group(1).lower()] if found else None

    def types(tensors):
        return sorted({k for k in (kind(t) for t in tensors if isinstance(t, dict)) if k})

    return [{"name": layer.get("Name", ""), "type": layer.get("LayerType", ""),
             "inputs": types(layer.get("Inputs", [])), "outputs": types(layer.get("Outputs", [])),
             "tactic": str(layer.get("TacticName", ""))}
            for layer in info.get("Layers", []) if isinstance(layer, dict)]


def tensor_datatype(tensor):
    """The data type text of one tensor of an inspector layer, in either schema: TensorRT 10 writes one
    ``"Format/Datatype"`` string ("Row major linear FP32"); TensorRT 11 splits it into ``"Format"`` (the layout) and
    ``"DataType"`` ("Float"), per NVIDIA's "Migrating IEngineInspector Usage from TensorRT 10.x to 11.x"
    (docs.nvidia.com/deeplearning/tensorrt/11.0.0/api/migration/tensorrt-10x-to-11x-IEngineInspector.html). The key
    is matched without regard to case (``Datatype`` or ``DataType``); with neither key, the ``Format`` text."""
    keys = {str(key).lower(): value for key, value in tensor.items()}
    for key in ("datatype", "format/datatype", "format"):
        if key in keys:
            return str(keys[key])
    return ""


def layer_precisions(engine):
    """:func:`inspector_layers` of ``engine`` (a deserialized ``ICudaEngine``), read with its engine inspector.

    Needs an engine built with ``ProfilingVerbosity.DETAILED`` (what edgekd's engine builder does); with less detail
    the inspector names the layers only and their types come back empty."""
    import tensorrt as trt

    return inspector_layers(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))


def precision_counts(layers):
    """How many layers compute in each precision (a layer counts under the narrowest type among its inputs)."""
    return dict(Counter(min(layer["inputs"] or layer["outputs"], key=_ORDER.index)
                        for layer in layers if layer["inputs"] or layer["outputs"]))


def torch_dtype(numpy_dtype):
    """The torch dtype of a numpy dtype (TensorRT reports tensor types as numpy dtypes)."""
    import torch

    return torch.from_numpy(np.empty(0, dtype=numpy_dtype)).dtype


class Session:
    """An engine deserialized on ``settings["device"]`` (``cuda`` or ``cuda:N``, default ``cuda:0``) with one
    execution context and a private stream; :meth:`bind` allocates the device and pinned host buffers of one batch
    shape once and binds them by tensor name."""

    def __init__(self, path, settings, shape=None):
        import tensorrt as trt
        import torch

        if int(trt.__version__.split(".")[0]) < 10:
            raise LoadError("TensorRT " + trt.__version__ + " is too old: the device runner needs TensorRT >= 10")
        if not torch.cuda.is_available():
            raise LoadError("torch sees no CUDA device: TensorRT engines run on an NVIDIA GPU")
        self.trt, self.torch = trt, torch
        self.device = torch.device(str(settings.get("device") or "cuda:0").lower())
        self.logger = trt.Logger(trt.Logger.WARNING)
        with open(path, "rb") as handle:
            blob = handle.read()
        with torch.cuda.device(self.device):
            self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(blob)
            if self.engine is None:
                raise LoadError("TensorRT " + trt.__version__ + " cannot load this engine (engines only load on the "
                                "GPU architecture and TensorRT version that built them)")
            self.context = self.engine.create_execution_context()
            self.stream = torch.cuda.Stream(self.device)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        if len(self.inputs) != 1 or not self.outputs:
            raise LoadError("expected one input and at least one output, found " + str(self.inputs) + " and "
                            + str(self.outputs))
        self.dtypes = {n: torch_dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}

    def input_shape(self):
        return [None if d < 0 else int(d) for d in self.engine.get_tensor_shape(self.inputs[0])]

    def prepare(self, shape):
        """Set the input shape of the context (refused where the engine's profile does not cover it)."""
        if not self.context.set_input_shape(self.inputs[0], tuple(int(d) for d in shape)):
            raise LoadError("TensorRT rejected input shape " + str(list(shape)) + " (outside the engine's "
                            "optimisation profile)")

    def bind(self, x):
        """A no-argument call: input host→device, ``execute_async_v3``, first output device→host, stream
        synchronize; the function returning that output (a host array, refreshed by each call); None (TensorRT
        reports no per-call latency of its own)."""
        torch = self.torch
        self.prepare(x.shape)
        name = self.inputs[0]
        with torch.cuda.device(self.device):
            host_in = torch.from_numpy(np.ascontiguousarray(x)).to(self.dtypes[name]).pin_memory()
            device_in = torch.empty(tuple(x.shape), dtype=self.dtypes[name], device=self.device)
            self.context.set_tensor_address(name, device_in.data_ptr())
            device_out = {}
            for out in self.outputs:
                shape = tuple(int(d) for d in self.context.get_tensor_shape(out))
                device_out[out] = torch.empty(shape, dtype=self.dtypes[out], device=self.device)
                self.context.set_tensor_address(out, device_out[out].data_ptr())
            first = self.outputs[0]
            host_out = torch.empty(tuple(device_out[first].shape), dtype=self.dtypes[first]).pin_memory()
        context, stream, handle = self.context, self.stream, self.stream.cuda_stream
        buffers = (host_in, device_in, device_out, host_out)  # kept alive while the call is

        def call(_buffers=buffers):
            with torch.cuda.stream(stream):
                device_in.copy_(host_in, non_blocking=True)
                if not context.execute_async_v3(handle):
                    raise RuntimeError("TensorRT execute_async_v3 failed on input " + str(list(x.shape)))
                host_out.copy_(device_out[first], non_blocking=True)
            stream.synchronize()

        return call, lambda: host_out.float().numpy(), None

    def describe(self):
        torch = self.torch
        major, minor = torch.cuda.get_device_capability(self.device)
        return {"runtime": "tensorrt", "version": self.trt.__version__, "device": str(self.device),
                "gpu": torch.cuda.get_device_name(self.device), "compute_capability": str(major) + "." + str(minor),
                "threads": None, "layer_precisions": precision_counts(layer_precisions(self.engine)),
                "inference_precision": "per layer, as built (see layer_precisions)",
                "transfers": "timed: host-to-device input and device-to-host output copies are inside each call"}
