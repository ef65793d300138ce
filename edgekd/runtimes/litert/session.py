"""The LiteRT device-runner session: a ``.tflite`` model in ``ai_edge_litert``'s interpreter, inputs bound once.

Self-contained (numpy and ``ai_edge_litert`` only, Python 3.8+), so the device runner carries it to a Raspberry Pi
over ssh and the deploy folder ships it. It follows the device runner's session protocol
(``edgekd/bench/device_runner.py``): ``input_shape()``, ``prepare(shape)``, ``bind(x)`` returning ``(call, output,
runtime_latency)`` where ``call()`` is one ``Interpreter.invoke()`` on the input set once and ``output()`` reads the
logits, and ``describe()``. A model the interpreter refuses, or an input shape it cannot take, raises
:class:`LoadError`; a crash while running is the interpreter's own ``RuntimeError``.

Full-integer models take and return int8 (or uint8) tensors: :func:`quantize` maps float input to the input
tensor's ``round(x / scale) + zero_point`` (saturated to the type's range), :func:`dequantize` maps the output back
with ``(q - zero_point) * scale`` (the TFLite quantization spec, ``tensorflow/lite/g3doc/performance/
quantization_spec.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Optional

import numpy as np

DELEGATES = ("xnnpack", "none")
"""``xnnpack``: the interpreter's default XNNPACK CPU delegate (op resolver ``AUTO``); ``none``: the built-in
kernels only (``BUILTIN_WITHOUT_DEFAULT_DELEGATES``)."""


class LoadError(Exception):
    """LiteRT cannot load the model, or cannot take the input shape asked (the device runner reports kind
    ``load``)."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """``x`` in the tensor type of ``detail`` (an interpreter tensor detail): unchanged for a float tensor, else
    ``clip(round(x / scale) + zero_point)`` to the integer type's range."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return np.ascontiguousarray(x, dtype=dtype)
    scale, zero_point = detail["quantization"]
    if not scale:
        raise LoadError("integer input tensor " + repr(detail["name"]) + " has no quantization scale")
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, dtype=np.float32) / np.float32(scale)) + zero_point
    return np.ascontiguousarray(np.clip(q, info.min, info.max).astype(dtype))


def dequantize(q: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Float32 values of ``q``, a tensor described by ``detail``: ``(q - zero_point) * scale`` for an integer
    tensor, a float32 copy otherwise."""
    if np.dtype(detail["dtype"]).kind == "f":
        return np.asarray(q, dtype=np.float32)
    scale, zero_point = detail["quantization"]
    return ((q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)


def model_precision(details: list[dict[str, Any]], input_dtype: Any) -> str:
    """What the model computes in, from its tensors' types: ``int8`` where the input itself is integer
    (full-integer) and no tensor is float32, ``int8+f32`` where int8 meets float32 (a full-integer model with ops
    kept float, or int8 weights with float activations: dynamic range), ``f32`` otherwise (float16 weights
    included: XNNPACK and the built-in kernels dequantize them to float32 once, at preparation)."""
    if np.dtype(input_dtype).kind in "iu":
        return "int8+f32" if any(np.dtype(d["dtype"]) == np.float32 for d in details) else "int8"
    if any(np.dtype(d["dtype"]) == np.int8 for d in details):
        return "int8+f32"
    return "f32"


class Session:
    """A ``.tflite`` model in ``ai_edge_litert.interpreter.Interpreter`` with the spec's settings: ``threads``
    (``num_threads``; default: the interpreter's) and ``delegate`` (one of :data:`DELEGATES`, default ``xnnpack``);
    ``shape``: the input shape to prepare now (:meth:`prepare`)."""

    def __init__(self, path: str, settings: dict[str, Any], shape: Optional[Sequence[int]] = None) -> None:
        from ai_edge_litert import interpreter as lite

        delegate = settings.get("delegate") or "xnnpack"
        if delegate not in DELEGATES:
            raise LoadError("LiteRT delegate " + repr(delegate) + " is not one of " + ", ".join(DELEGATES))
        resolver = (lite.OpResolverType.AUTO if delegate == "xnnpack"
                    else lite.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.threads = settings.get("threads")
        self.delegate = delegate
        try:
            self.interpreter = lite.Interpreter(model_path=str(path), num_threads=self.threads,
                                                experimental_op_resolver_type=resolver)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise LoadError("LiteRT cannot load this model (" + _first_line(exc) + ")") from exc
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.version = getattr(lite, "__version__", None) or _package_version()
        if shape is not None:
            self.prepare(shape)

    def input_shape(self) -> list[Optional[int]]:
        """The input's shape, ``None`` where its signature is dynamic (``-1``)."""
        return [None if int(s) < 0 else int(d) for d, s in zip(self.input["shape"], self.input["shape_signature"])]

    def prepare(self, shape: Sequence[int]) -> None:
        """Resize the input to ``shape`` (a dynamic batch) and re-allocate; a fixed shape must already match."""
        if list(self.input["shape"]) == list(shape):
            return
        fixed = [s for s, d in zip(self.input_shape(), shape) if s is not None and s != d]
        if len(shape) != len(self.input["shape"]) or fixed:
            raise LoadError("input shape " + str(tuple(shape)) + " does not match the model's "
                                + str(tuple("?" if s is None else s for s in self.input_shape())))
        try:
            self.interpreter.resize_tensor_input(self.input["index"], list(shape), strict=True)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise LoadError("LiteRT cannot resize the input to " + str(tuple(shape)) + " ("
                                + _first_line(exc) + ")") from exc
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def bind(self, x: np.ndarray) -> tuple[Callable[[], None], Callable[[], np.ndarray], None]:
        """``x`` (float32) resized to and quantized for the input tensor and set once; ``call()`` is one
        ``invoke()``, ``output()`` the float32 logits (dequantized for an integer output)."""
        self.prepare(tuple(x.shape))
        self.interpreter.set_tensor(self.input["index"], quantize(x, self.input))
        interpreter, out = self.interpreter, self.output
        return interpreter.invoke, lambda: dequantize(interpreter.get_tensor(out["index"]), out), None

    def describe(self) -> dict[str, Any]:
        """Runtime, version, threads, delegate, the input tensor's type and the precision in force."""
        details = self.interpreter.get_tensor_details()
        return {"runtime": "litert", "version": self.version, "threads": self.threads, "delegate": self.delegate,
                "input_dtype": np.dtype(self.input["dtype"]).name,
                "inference_precision": model_precision(details, self.input["dtype"])}


def predictor(model: Any, runtime: dict[str, Any]) -> tuple[Callable[[np.ndarray], np.ndarray], Optional[int]]:
    """The deploy folder's ``predict.py`` entry: a function mapping a float32 batch to float32 logits with the
    session edgekd measured (the card's ``threads`` and ``delegate``), and the model's fixed batch size (None when
    dynamic)."""
    session = Session(str(model), runtime)

    def run(x: np.ndarray) -> np.ndarray:
        call, output, _ = session.bind(np.ascontiguousarray(x, dtype=np.float32))
        call()
        return output()

    return run, session.input_shape()[0]


def _package_version() -> Optional[str]:
    try:
        from importlib.metadata import version

        return version("ai-edge-litert")
    except Exception:  # metadata absent (a copied wheel, a vendored build)
        return None
