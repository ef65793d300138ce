"""ONNX Runtime session set-up, the one place edgekd opens an ONNX Runtime session: the Runner, the device runner
and the deploy folder's ``predict.py`` all call :func:`create_session`.

Imports only numpy and onnxruntime (and those only when called), so the device runner copies this file beside
itself onto a board and the deploy folder ships it. :class:`Session` is the device runner's session.
"""

from __future__ import annotations

import numpy as np

_FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}

FLOAT_NODES_KEY = "edgekd.float_nodes"
"""Metadata key of a mixed-precision model (``edgekd.quantize.mixed.FLOAT_NODES_KEY``): the nodes it keeps in float."""

KEEP_FLOAT = ("WeightBiasQuantization",)
"""Transformers disabled for such a model: ``WeightBiasQuantization`` would give each float Conv/Gemm reading a
DequantizeLinear output INT8 weights of its own (``edgekd.quantize.sensitivity.KEEP_FLOAT``)."""


class LoadError(Exception):
    """ONNX Runtime refuses the model or a requested provider (the device runner reports kind ``load``)."""


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def create_session(path, threads=None, providers=("CPUExecutionProvider",), provider_options=None,
                   profile_prefix=None, spinning=True):
    """An ``InferenceSession`` on ``path`` with ``ORT_ENABLE_ALL``, ``intra_op_num_threads=threads`` (0: ONNX
    Runtime's default) and exactly ``providers`` (full names, priority order; ``provider_options``: name → options).
    ``spinning=False`` makes idle intra-op threads sleep at once instead of spinning
    (``session.intra_op.allow_spinning``): two sessions timed interleaved would otherwise spin against each other.

    ONNX Runtime silently falls back to the CPU provider when a requested one fails to start; this raises
    :class:`LoadError` instead, so a measured number is never from the wrong provider. ``profile_prefix`` turns on
    ONNX Runtime's own per-node profiling. A model listing nodes kept in float (:data:`FLOAT_NODES_KEY`) is opened
    again with :data:`KEEP_FLOAT` disabled, so ONNX Runtime computes those nodes in float; a profiled session is
    opened only once that is known, so it writes a single profile."""
    session = _session(path, threads, providers, provider_options, None, (), spinning)
    keep_float = FLOAT_NODES_KEY in session.get_modelmeta().custom_metadata_map
    if not keep_float and not profile_prefix:
        return session
    return _session(path, threads, providers, provider_options, profile_prefix, KEEP_FLOAT if keep_float else (),
                    spinning)


def _session(path, threads, providers, provider_options, profile_prefix, disabled, spinning):
    """:func:`create_session` with the graph transformers ``disabled``."""
    import onnxruntime as ort

    providers = list(providers or ["CPUExecutionProvider"])
    per = dict(provider_options or {})
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or 0
    options.log_severity_level = 3
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers,
                                       provider_options=[dict(per.get(p) or {}) for p in providers],
                                       disabled_optimizers=list(disabled))
    except Exception as exc:  # onnxruntime raises its own pybind exception types for a bad file
        raise LoadError("ONNX Runtime cannot load this model (" + _first_line(exc) + ")") from exc
    started = session.get_providers()
    dropped = [p for p in providers if p not in started]
    if dropped:
        raise LoadError("execution provider " + ", ".join(dropped) + " failed to start (ONNX Runtime fell back to "
                        + ", ".join(started) + ")")
    return session


def input_dtype(session):
    """The numpy type of the session's first input, or None when it is not a float tensor."""
    return _FLOAT_TYPES.get(session.get_inputs()[0].type)


class Session:
    """The device runner's ONNX Runtime session: :func:`create_session` with the spec's settings; :meth:`bind` binds
    one input and a preallocated output once (I/O binding, no per-call conversion)."""

    def __init__(self, path, settings, shape=None, profile_prefix=None):
        import onnxruntime as ort

        self.session = create_session(path, settings.get("threads"), settings.get("providers"),
                                      settings.get("provider_options"), profile_prefix)
        self.input = self.session.get_inputs()[0]
        self.output = self.session.get_outputs()[0].name
        self.version = ort.__version__

    def input_shape(self):
        return [d if isinstance(d, int) else None for d in self.input.shape]

    def prepare(self, shape):
        """Nothing to compile per shape in ONNX Runtime."""

    def bind(self, x):
        """A no-argument call running the session on ``x`` through I/O binding, a function returning the output
        array (written in place) and None (ONNX Runtime reports no per-call latency of its own)."""
        meta = self.session.get_outputs()[0]
        dims = [len(x) if i == 0 and not isinstance(d, int) else d for i, d in enumerate(meta.shape)]
        if not all(isinstance(d, int) for d in dims):  # a symbolic dimension past the batch: ask the runtime once
            dims = list(self.session.run([self.output], {self.input.name: x})[0].shape)
        out = np.empty(dims, dtype=_FLOAT_TYPES.get(meta.type, np.float32))
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input.name, x)
        binding.bind_output(self.output, "cpu", 0, out.dtype, list(out.shape), out.ctypes.data)
        session = self.session

        def call():
            session.run_with_iobinding(binding)

        return call, lambda: out, None

    def describe(self):
        return {"runtime": "onnxruntime", "version": self.version, "providers": self.session.get_providers(),
                "graph_optimization_level": "ORT_ENABLE_ALL"}


def predictor(model, runtime):
    """The deploy folder's ``predict.py`` entry: a function mapping a float32 batch to logits with the session edgekd
    measured (:func:`create_session` with the card's threads and providers), and the model's fixed batch size (None
    when dynamic)."""
    session = create_session(model, runtime.get("threads"), runtime.get("providers") or ["CPUExecutionProvider"],
                             runtime.get("provider_options"))
    node = session.get_inputs()[0]
    fixed = node.shape[0] if isinstance(node.shape[0], int) else None
    return (lambda x: session.run(None, {node.name: x})[0]), fixed
