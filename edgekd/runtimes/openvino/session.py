"""OpenVINO compile settings, the one place edgekd compiles an OpenVINO model: the Runner, the device runner and the
deploy folder's ``predict.py`` all use :func:`compile_config` and :func:`compile_model`.

Compiled with ``PERFORMANCE_HINT: LATENCY`` (one stream, one request: what an edge application does), on the CPU
``INFERENCE_NUM_THREADS: threads``, and always an explicit ``INFERENCE_PRECISION_HINT`` (default ``f32``): left to
itself OpenVINO computes in bf16 on CPUs with AVX-512 BF16 or AMX and in fp16 on GPUs, whatever the artifact's label.
A model compiled in another precision than asked is refused.

Imports only numpy and openvino (openvino only when called), so the device runner copies this file beside itself
onto a board and the deploy folder ships it. :class:`Session` is the device runner's session.
"""

from __future__ import annotations

PRECISIONS = {"f32": "f32", "fp32": "f32", "f16": "f16", "fp16": "f16", "bf16": "bf16"}
"""Accepted ``inference_precision`` words → OpenVINO's ``INFERENCE_PRECISION_HINT``."""

#: layers of OpenVINO's runtime graph that only move or hold data (their precision says nothing about the compute)
DATA_LAYERS = frozenset({"Const", "Input", "Output", "Parameter", "Result", "Reorder", "Reshape"})


class LoadError(Exception):
    """OpenVINO cannot read or compile the model as asked (the device runner reports kind ``load``)."""


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def compile_config(device, threads, inference_precision):
    """The ``compile_model`` config of every edgekd OpenVINO run: ``PERFORMANCE_HINT: LATENCY``, the CPU's
    ``INFERENCE_NUM_THREADS`` and the explicit ``INFERENCE_PRECISION_HINT``; a ValueError for an unknown
    precision."""
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if threads is not None and device.upper() == "CPU":
        config["INFERENCE_NUM_THREADS"] = threads
    if str(inference_precision).lower() not in PRECISIONS:
        raise ValueError("inference_precision " + repr(inference_precision) + " is not one of "
                         + ", ".join(PRECISIONS))
    config["INFERENCE_PRECISION_HINT"] = PRECISIONS[str(inference_precision).lower()]
    return config


def compile_model(core, model, device, config):
    """``core.compile_model(model, device, config)``, refused (:class:`LoadError`) where OpenVINO fails or compiles
    in another ``INFERENCE_PRECISION_HINT`` than ``config`` asks (e.g. bf16 on a CPU without BF16)."""
    try:
        compiled = core.compile_model(model, device, config)
    except RuntimeError as exc:
        raise LoadError("OpenVINO cannot compile this model for " + device + " (" + _first_line(exc) + ")") from exc
    asked = config.get("INFERENCE_PRECISION_HINT")
    got = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    if asked and got != asked:
        raise LoadError("OpenVINO " + device + " compiled in " + got + ", not the requested " + asked
                        + " (this device cannot compute in it)")
    return compiled


def layer_precisions(compiled):
    """How many compute layers of a compiled model have each ``runtimePrecision`` in OpenVINO's runtime graph (e.g.
    ``{"bf16": 10, "f32": 1}``): what the plugin actually scheduled, not what was asked for. For an IR with fp16
    weights on a CPU without fp16 arithmetic it names the weights' precision (``f16``) while the compute is f32, as
    ``INFERENCE_PRECISION_HINT`` says."""
    counts = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) not in DATA_LAYERS:
            precision = info["runtimePrecision"].astype(str)
            counts[precision] = counts.get(precision, 0) + 1
    return dict(sorted(counts.items()))


def sync_infer(request):
    """A no-argument call running ``request`` synchronously on the tensors already set, as benchmark_app's
    ``request.infer()`` does, without the Python wrapper's per-call work: ``InferRequest.infer()`` dispatches its
    (absent) inputs and copies every output into a new dict; the binding's own ``infer({}, share_outputs=True)``
    does neither. Where a binding lacks it, ``start_async(); wait()``."""
    base = type(request).__mro__[1]  # the pybind11 class under openvino's Python InferRequest
    native = getattr(base, "infer", None)
    if native is None:
        start, wait = request.start_async, request.wait

        def call():
            start()
            wait()

        return call
    inputs = {}

    def call():
        native(request, inputs, True, False)

    return call


class Session:
    """The device runner's OpenVINO session: the model compiled with the spec's config for the static shape it is
    run with (reshaped, as benchmark_app does); :meth:`bind` sets an input tensor sharing ``x`` once."""

    def __init__(self, path, settings, shape=None):
        import openvino as ov

        self.ov = ov
        self.core = ov.Core()
        self.device = settings.get("device", "CPU")
        self.config = dict(settings.get("config") or {})
        try:
            self.model = self.core.read_model(str(path))
        except RuntimeError as exc:
            raise LoadError("OpenVINO cannot read this model (" + _first_line(exc) + ")") from exc
        self.compiled = None
        if shape is not None:
            self.prepare(shape)

    def input_shape(self):
        return [None if d.is_dynamic else d.get_length() for d in self.model.input(0).partial_shape]

    def prepare(self, shape):
        """Compile for the static input ``shape`` unless already compiled for it."""
        if self.compiled is not None and list(self.compiled.input(0).shape) == list(shape):
            return
        self.model.reshape({0: list(shape)})
        self.compiled = compile_model(self.core, self.model, self.device, self.config)

    def bind(self, x):
        """One synchronous inference on an input tensor set once (sharing ``x``'s memory), the output read in
        place (see :func:`sync_infer`), and OpenVINO's own latency of the last call (ms)."""
        self.prepare(x.shape)
        request = self.compiled.create_infer_request()
        request.set_input_tensor(self.ov.Tensor(x, shared_memory=True))
        call = sync_infer(request)
        return call, lambda: request.get_output_tensor(0).data, lambda: request.latency

    def describe(self):
        compiled = self.compiled
        threads = compiled.get_property("INFERENCE_NUM_THREADS") if self.device == "CPU" else None
        return {"runtime": "openvino", "version": self.ov.get_version(), "device": self.device, "threads": threads,
                "inference_precision": compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
                "layer_precisions": layer_precisions(compiled),
                "performance_hint": str(compiled.get_property("PERFORMANCE_HINT")), "static_shape": True}


def predictor(model, runtime):
    """The deploy folder's ``predict.py`` entry: a function mapping a float32 batch to logits with the model compiled
    as edgekd measured it (:func:`compile_config` with the card's device, threads and explicit inference precision),
    and the model's fixed batch size (None when dynamic)."""
    import openvino as ov

    core = ov.Core()
    device = runtime.get("device", "CPU")
    try:
        model = core.read_model(str(model))
    except RuntimeError as exc:
        raise LoadError("OpenVINO cannot read this model (" + _first_line(exc) + ")") from exc
    config = compile_config(device, runtime.get("threads"), runtime["inference_precision"])
    compiled = compile_model(core, model, device, config)
    request = compiled.create_infer_request()
    batch = compiled.input(0).partial_shape[0]
    fixed = None if batch.is_dynamic else batch.get_length()

    def run(x):
        request.infer({0: x})
        return request.get_output_tensor(0).data.copy()

    return run, fixed
