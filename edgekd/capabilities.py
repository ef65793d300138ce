"""The runtime capability table, as data: what edgekd builds and runs for each (runtime, precision) pair.

One row per pair a device profile may list. Device profiles are validated against it at load (a pair, a device kind
or a profile field the runtime does not take is exit 2 before any stage), stages dispatch from it (``built_by`` and
``methods``: the exporter or the quantizers that make the artifact), ``validate`` and each stage's plan say from it
why a requested pair is not built here, and ``edgekd zoo runtimes`` prints it. This module imports nothing: the
checks of hardware requirements that need a back end (bf16 support, a TensorRT install) live in
:mod:`edgekd.runtime.hardware`, keyed by ``requires``.

Adding a runtime, with the full list of files it touches: ``docs/extending.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

BuiltBy = Literal["export", "quantize"]
Requirement = Literal["bf16", "tensorrt"]
NncfTarget = Literal["ANY", "CPU", "GPU", "NPU"]


@dataclass(frozen=True)
class RuntimeSpec:
    """A runtime: the artifact formats it opens, the device kinds a profile may name (``device:``, compared on the
    part before ``.``/``:``, case-insensitively), its default device, and the profile fields it reads."""

    name: str
    formats: tuple[str, ...]
    device_kinds: tuple[str, ...]
    default_device: str
    profile_fields: tuple[str, ...]
    quantize_targets: dict[str, NncfTarget]
    """device kind → the NNCF ``target_device`` whose hardware config INT8 artifacts of this runtime follow"""
    import_name: str
    """the Python module that runs its artifacts (what the pre-flight imports on the target)"""
    install: str
    """how to install that module, as the pre-flight's fix says it"""
    provider_packages: dict[str, str] = field(default_factory=dict)
    """execution provider (a profile's ``providers``) → the package that ships it, for providers the default
    package lacks"""


@dataclass(frozen=True)
class Capability:
    """One (runtime, precision) pair: the artifact ``format``, the stage that builds it (``None``: the torch models
    are measured as they are) with its ``methods`` (exporter or quantizers), and the hardware it ``requires``."""

    runtime: str
    precision: str
    format: str
    built_by: BuiltBy | None
    methods: tuple[str, ...]
    requires: Requirement | None
    note: str


RUNTIME_SPECS: dict[str, RuntimeSpec] = {spec.name: spec for spec in (
    RuntimeSpec("torch", formats=("torch",), device_kinds=("cpu", "cuda"), default_device="cpu",
                profile_fields=("device",), quantize_targets={}, import_name="torch", install="pip install torch"),
    RuntimeSpec("onnxruntime", formats=("onnx",), device_kinds=("cpu",), default_device="CPU",
                profile_fields=("providers",), quantize_targets={"cpu": "CPU"}, import_name="onnxruntime",
                install="pip install onnxruntime",
                provider_packages={"CUDAExecutionProvider": "onnxruntime-gpu",
                                   "TensorrtExecutionProvider": "onnxruntime-gpu",
                                   "OpenVINOExecutionProvider": "onnxruntime-openvino",
                                   "DmlExecutionProvider": "onnxruntime-directml",
                                   "QNNExecutionProvider": "onnxruntime-qnn"}),
    RuntimeSpec("openvino", formats=("openvino", "onnx"), device_kinds=("cpu", "gpu", "npu"), default_device="CPU",
                profile_fields=("device",), quantize_targets={"cpu": "CPU", "gpu": "GPU", "npu": "NPU"},
                import_name="openvino", install="pip install openvino"),
    RuntimeSpec("tensorrt", formats=("tensorrt",), device_kinds=("cuda",), default_device="cuda:0",
                profile_fields=("device",), quantize_targets={"cuda": "ANY"}, import_name="tensorrt",
                install="pip install tensorrt, or apt install python3-libnvinfer on a Jetson"),
)}

CAPABILITIES: tuple[Capability, ...] = (
    Capability("torch", "fp32", "torch", None, (), None, "the teacher and student themselves, in eager PyTorch"),
    Capability("torch", "bf16", "torch", None, (), "bf16", "eager PyTorch under bf16 autocast"),
    Capability("onnxruntime", "fp32", "onnx", "export", ("onnx",), None, "ONNX graph, fp32"),
    Capability("onnxruntime", "int8", "onnx", "quantize", ("ort", "nncf", "qat"), None,
               "Q/DQ ONNX graph: ONNX Runtime static quantization, NNCF PTQ, QAT"),
    Capability("openvino", "fp32", "openvino", "export", ("openvino",), None, "IR, fp32 weights and compute"),
    Capability("openvino", "bf16", "openvino", "export", ("openvino",), "bf16", "IR, fp32 weights, bf16 compute"),
    Capability("openvino", "fp16", "openvino", "export", ("openvino-fp16",), None,
               "IR, fp16 weights (computed in fp16 where the device has it, else f32)"),
    Capability("openvino", "int8", "openvino", "quantize", ("nncf", "nncf_ac", "qat"), None,
               "INT8 IR: NNCF PTQ, accuracy-controlled PTQ, QAT"),
    Capability("tensorrt", "fp32", "tensorrt", "export", ("tensorrt",), "tensorrt", "engine, fp32"),
    Capability("tensorrt", "fp16", "tensorrt", "export", ("tensorrt",), "tensorrt", "engine, fp16"),
    Capability("tensorrt", "int8", "tensorrt", "quantize", ("ort", "qat"), "tensorrt",
               "engine from a symmetric Q/DQ ONNX graph (ONNX Runtime calibration or QAT)"),
)


def capability(runtime: str, precision: str) -> Capability | None:
    """The row for ``(runtime, precision)``, or None when edgekd offers no such artifact."""
    return next((c for c in CAPABILITIES if c.runtime == runtime and c.precision == precision), None)


def offered_precisions(runtime: str) -> tuple[str, ...]:
    """The precisions a device profile may list for ``runtime``, in table order."""
    return tuple(c.precision for c in CAPABILITIES if c.runtime == runtime)


def device_kind(device: str) -> str:
    """``GPU.1`` → ``gpu``, ``cuda:0`` → ``cuda``: the kind of a runtime device name."""
    return device.replace(":", ".").split(".")[0].lower()


def device_index(device: str) -> int:
    """``cuda:1`` → 1, ``GPU.1`` → 1, ``cuda`` or ``CPU`` → 0: the index of a runtime device name; a ValueError when
    the part after ``:``/``.`` is not a number."""
    _, _, index = device.replace(":", ".").partition(".")
    if not index:
        return 0
    if not index.isdigit():
        raise ValueError(f"device {device!r}: expected KIND or KIND:N with a device number N, e.g. cuda:1")
    return int(index)
