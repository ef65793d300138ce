"""TensorRT engine build from an ONNX artifact with the TensorRT Python API, on TensorRT 10 and 11.

An engine is tied to the GPU architecture and the TensorRT version that built it: build it on the target device.
Building needs TensorRT >= 10 and a CUDA device (:func:`edgekd.runtimes.tensorrt.runner.tensorrt_problem` says what
is missing; the build then stops with a one-line UserError).

Precision policy (the precision asked for is the precision of the engine, or the build fails with a UserError):

- ``fp32``: an fp32 graph without Q/DQ nodes, built with ``BuilderFlag.TF32`` cleared. TensorRT enables TF32 by
  default, and on Ampere and later GPUs (every Jetson Orin) convolutions and matrix products would then round their
  inputs to 10-bit mantissas under an fp32 label; cleared, they compute in IEEE fp32.
- ``fp16``: TensorRT 10 builds the fp32 graph with ``BuilderFlag.FP16`` (weak typing). TensorRT 11 is strongly typed
  only and removed that flag: the graph itself must be fp16, so an fp32 graph is converted with onnxconverter-common
  (``convert_float_to_float16(keep_io_types=True)``) when it is installed, else the build stops and says so. Layers
  TensorRT keeps in float may use TF32 (its default).
- ``int8``: explicit quantization only: the graph must carry QuantizeLinear/DequantizeLinear pairs with zero points
  of 0 (TensorRT supports symmetric quantization only) and no DequantizeLinear of int32 data (TensorRT's
  ``IDequantizeLayer`` takes INT8, FP8 or INT4 inputs only, so biases stay float); make it with
  ``ort_static_quantize(..., symmetric_activations=True, quantize_bias=False)``. TensorRT 10 sets
  ``BuilderFlag.INT8``; TensorRT 11 takes the types from the graph. Implicit (calibrator) INT8 is deprecated in 10
  and gone in 11, so it is not offered.
- ``int8`` with ``float_layers`` (mixed precision): the named ONNX nodes have no Q/DQ pair in the graph
  (``nodes_to_exclude``), so under explicit quantization they compute in float; on TensorRT 10 their layers are also
  pinned to fp32 through the layer API (``layer.precision = trt.float32``, ``layer.set_output_type(i,
  trt.float32)``) with ``BuilderFlag.OBEY_PRECISION_CONSTRAINTS``, so the builder may not pick a reduced-precision
  kernel for them. TensorRT 11 removed that flag and those hints: a strongly typed network takes every layer's type
  from the graph, where those nodes are float32. Either way the built engine's inspector must show each such layer
  reading fp32 (:func:`edgekd.runtimes.tensorrt.engine_precision.float_layer_problem`).

Every engine is built with ``ProfilingVerbosity.DETAILED``, so the engine inspector reports each layer's data types
(:func:`edgekd.runtimes.tensorrt.session.layer_precisions`), and those are checked before the engine is written: an
fp16 or int8 engine none of whose compute layers reads that type, or an fp32 engine that reads a reduced one, is
refused (:mod:`edgekd.runtimes.tensorrt.engine_precision`). It is built on the CUDA device the profile names
(``cuda:N``). A dynamic batch dimension gets one optimisation profile ``(1, opt_batch, max_batch)``; a fixed one
builds a static-batch engine.

A timing cache (``timing_cache=``) is read before the build and the builder's own cache is written back atomically
after it. A cache TensorRT refuses (made by another GPU or TensorRT version, or corrupt) is reported in the log and
replaced by a fresh one; it is never written back unchanged.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgekd._atomic import atomic_write_bytes
from edgekd.capabilities import device_index
from edgekd.errors import UserError
from edgekd.export.build import register_exporter
from edgekd.runtime import first_line
from edgekd.runtimes.tensorrt.engine_precision import engine_precision_problem, float_layer_problem
from edgekd.runtimes.tensorrt.runner import tensorrt_problem
from edgekd.runtimes.tensorrt.session import layer_precisions

log = logging.getLogger(__name__)

Precision = Literal["fp32", "fp16", "int8"]


def inspect_onnx_precision(onnx_path: Path) -> dict[str, Any]:
    """What the graph at ``onnx_path`` says about its precision: ``qdq`` (has QuantizeLinear nodes),
    ``symmetric`` (every Q/DQ zero point is 0), ``fp16`` (has float16 initializers) and ``int32_dequantize`` (the
    names of DequantizeLinear nodes whose input is int32, e.g. biases ONNX Runtime quantized)."""
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:  # protobuf raises DecodeError and others for a corrupt file
        raise UserError(f"{onnx_path}: not a readable ONNX model ({first_line(exc)})") from exc
    inits = {i.name: i for i in model.graph.initializer}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    zero_points = [numpy_helper.to_array(inits[n.input[2]]) for n in qdq if len(n.input) > 2 and n.input[2] in inits]
    types = _tensor_types(model) if qdq else {}
    return {
        "qdq": bool(qdq),
        "symmetric": all(not np.any(zp) for zp in zero_points),
        "fp16": any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer),
        "int32_dequantize": [n.name or n.output[0] for n in qdq if n.op_type == "DequantizeLinear"
                             and types.get(n.input[0]) == onnx.TensorProto.INT32],
    }


def _tensor_types(model: Any) -> dict[str, int]:
    """The element type of every named tensor of ``model`` (initializers, Constant nodes, inputs, inferred values)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.value_info, *graph.output]}
    types.update({i.name: i.data_type for i in graph.initializer})
    for node in graph.node:
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None:
                types[node.output[0]] = value.data_type
    return types


def _check_graph(onnx_path: Path, precision: Precision) -> dict[str, Any]:
    """The graph facts, or a UserError when the graph cannot give an engine of ``precision``."""
    facts = inspect_onnx_precision(onnx_path)
    how = "ort_static_quantize with symmetric_activations=True and quantize_bias=False"
    if precision == "int8" and not facts["qdq"]:
        raise UserError(f"{onnx_path}: TensorRT int8 needs a Q/DQ graph; quantize it first ({how})")
    if precision != "int8" and facts["qdq"]:
        raise UserError(f"{onnx_path}: this graph has Q/DQ nodes, so its TensorRT engine is int8, not {precision}")
    if precision == "int8" and not facts["symmetric"]:
        raise UserError(f"{onnx_path}: TensorRT supports symmetric quantization only, this graph has non-zero zero "
                        f"points; quantize with {how}")
    if facts["int32_dequantize"]:
        nodes = facts["int32_dequantize"]
        raise UserError(f"{onnx_path}: TensorRT dequantizes INT8, FP8 or INT4 only, but {len(nodes)} DequantizeLinear "
                        f"node(s) take int32 input ({', '.join(nodes[:3])}{', ...' if len(nodes) > 3 else ''}: "
                        f"quantized biases); quantize with {how}")
    return facts


def _to_fp16_graph(onnx_path: Path, work: Path) -> Path:
    """The fp32 graph at ``onnx_path`` converted to fp16 (float32 input/output kept) for strongly typed TensorRT."""
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise UserError(f"{onnx_path}: TensorRT 11 is strongly typed and builds fp16 only from an fp16 graph; "
                        f"install onnxconverter-common to convert it, or give an fp16 ONNX model") from None
    import onnx

    converted = work / "fp16.onnx"
    onnx.save(float16.convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True), str(converted))
    return converted


def _error_logger(trt: Any) -> Any:
    """A ``trt.ILogger`` that keeps TensorRT's error messages (in ``.errors``) for a one-line UserError."""

    class ErrorLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(msg)

    return ErrorLogger()


def build_engine(onnx_path: Path, engine_path: Path, *, precision: Precision = "fp32",
                 timing_cache: Path | None = None, workspace_mb: int = 1024, opt_batch: int = 1,
                 max_batch: int = 64, device: str = "cuda:0", float_layers: Sequence[str] = ()) -> Path:
    """Build a TensorRT engine from ``onnx_path`` and write it atomically to ``engine_path``.

    Args:
        precision: ``fp32``, ``fp16`` or ``int8`` (see the module docstring for what each needs; fp32 engines are
            built without TF32).
        timing_cache: a file read before the build (if present and accepted by TensorRT) and replaced by the
            builder's cache after it, so rebuilds are fast.
        workspace_mb: the builder's workspace memory pool limit in MiB.
        opt_batch, max_batch: the optimisation profile of a dynamic batch dimension (min is 1).
        device: the CUDA device the engine is built for (``cuda`` or ``cuda:N``), as the device profile names it.
        float_layers: for ``int8``, ONNX node names (left without Q/DQ in the graph) whose layers stay fp32.

    Raises:
        UserError: the graph cannot give an engine of ``precision``, TensorRT >= 10 or the CUDA device is missing,
            TensorRT cannot parse or build the graph, or the built engine does not compute in ``precision``
            (:func:`edgekd.runtimes.tensorrt.engine_precision.engine_precision_problem`), or a float layer does
            not compute in fp32 (nothing is written then).
    """
    if precision not in ("fp32", "fp16", "int8"):
        raise UserError(f"TensorRT precision must be fp32, fp16 or int8, got {precision!r}")
    if float_layers and precision != "int8":
        raise UserError(f"{onnx_path}: float_layers are for int8 engines (a {precision} engine is all float)")
    if workspace_mb < 1 or not 1 <= opt_batch <= max_batch:
        raise ValueError(f"need workspace_mb >= 1 and 1 <= opt_batch <= max_batch, got {workspace_mb}, "
                         f"{opt_batch}, {max_batch}")
    facts = _check_graph(Path(onnx_path), precision)
    if (problem := tensorrt_problem()) is not None:
        raise UserError(f"{engine_path}: {problem}")
    import tensorrt as trt

    with cuda_device(device):  # the builder times its kernels on the current CUDA device
        return _build(trt, Path(onnx_path), Path(engine_path), precision, facts, timing_cache, workspace_mb,
                      opt_batch, max_batch, tuple(float_layers))


def _keep_float(trt: Any, network: Any, config: Any, nodes: tuple[str, ...], onnx_path: Path,
                strongly_typed: bool) -> None:
    """Pin the layers TensorRT's ONNX parser named after ``nodes`` to fp32 (see the module docstring); a node
    with no such layer is a UserError."""
    layers = {network.get_layer(i).name: network.get_layer(i) for i in range(network.num_layers)}
    missing = [node for node in nodes if node not in layers]
    if missing:
        raise UserError(f"{onnx_path}: TensorRT's network has no layer named after the float node(s) "
                        f"{', '.join(missing)}")
    if strongly_typed:  # TensorRT 11: the graph's types rule, and those nodes are float32 in it
        return
    for node in nodes:
        layer = layers[node]
        layer.precision = trt.float32
        for index in range(layer.num_outputs):
            layer.set_output_type(index, trt.float32)
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)


def _build(trt: Any, onnx_path: Path, engine_path: Path, precision: Precision, facts: dict[str, Any],
           timing_cache: Path | None, workspace_mb: int, opt_batch: int, max_batch: int,
           float_layers: tuple[str, ...] = ()) -> Path:
    strongly_typed = int(trt.__version__.split(".")[0]) >= 11
    logger = _error_logger(trt)
    builder = trt.Builder(logger)  # raises (it never returns None) when no CUDA device can be used
    network = builder.create_network(0)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # the inspector then reports each layer's types
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)  # enabled by default: fp32 would compute in TF32 on Ampere+
    elif not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16 if precision == "fp16" else trt.BuilderFlag.INT8)
    with tempfile.TemporaryDirectory(prefix="edgekd-trt-") as work:
        source = Path(onnx_path)
        if strongly_typed and precision == "fp16" and not facts["fp16"]:
            source = _to_fp16_graph(source, Path(work))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(source)):
            errors = "; ".join(str(parser.get_error(i)).replace("\n", " ") for i in range(parser.num_errors))
            raise UserError(f"{onnx_path}: TensorRT cannot parse this model ({errors or 'no error message'})")
    if float_layers:
        _keep_float(trt, network, config, float_layers, onnx_path, strongly_typed)
    _add_batch_profile(builder, network, config, opt_batch, max_batch)
    cache = _attach_timing_cache(trt, config, timing_cache, logger) if timing_cache is not None else None
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError(f"{onnx_path}: TensorRT {trt.__version__} failed to build a {precision} engine "
                        f"({_last_error(logger, 'no error message')})")
    engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
    layers = layer_precisions(engine)
    if (problem := engine_precision_problem(layers, precision)) is not None:
        raise UserError(f"{onnx_path}: {problem}")
    if float_layers and (problem := float_layer_problem(layers, float_layers)) is not None:
        raise UserError(f"{onnx_path}: {problem}")
    atomic_write_bytes(engine_path, bytes(memoryview(serialized)))
    if cache is not None and timing_cache is not None:
        filled = config.get_timing_cache() or cache  # the builder's own cache, with this build's timings
        atomic_write_bytes(timing_cache, bytes(memoryview(filled.serialize())))
    return Path(engine_path)


@contextmanager
def cuda_device(device: str) -> Iterator[None]:
    """``device`` (``cuda`` or ``cuda:N``) made torch's and CUDA's current device inside the block; a UserError when
    this host has no such device."""
    import torch

    index = device_index(device)
    count = torch.cuda.device_count()
    if index >= count:
        raise UserError(f"device {device!r}: this host has {count} CUDA device(s) (cuda:0 .. cuda:{count - 1})")
    with torch.cuda.device(index):
        yield


def _last_error(logger: Any, default: str) -> str:
    return logger.errors[-1].replace("\n", " ") if logger.errors else default


def _attach_timing_cache(trt: Any, config: Any, path: Path, logger: Any) -> Any:
    """Give the builder the timing cache stored at ``path``, or a fresh one when there is none or TensorRT refuses
    it (``create_timing_cache`` returns None for a corrupt file; ``set_timing_cache`` returns False for a cache
    from another GPU or TensorRT version, since mismatches are not ignored). Returns the attached cache, which must
    outlive the build; None when TensorRT takes no cache at all (the build then runs without one)."""
    stored = path.read_bytes() if path.is_file() else b""
    if stored:
        cache = config.create_timing_cache(stored)
        if cache is not None and config.set_timing_cache(cache, False):  # False: do not ignore a mismatch
            return cache
        log.warning("%s: TensorRT %s refused this timing cache (%s); starting a fresh one", path, trt.__version__,
                    "unreadable" if cache is None else "made by another GPU or TensorRT version")
        logger.errors.clear()  # the refusal is handled: it is not the reason of a later build failure
    cache = config.create_timing_cache(b"")
    if cache is not None and config.set_timing_cache(cache, False):
        return cache
    log.warning("%s: TensorRT %s refused a fresh timing cache; building without one", path, trt.__version__)
    return None


def _add_batch_profile(builder: Any, network: Any, config: Any, opt_batch: int, max_batch: int) -> None:
    """One optimisation profile ``(1, opt_batch, max_batch)`` when the input's batch dimension is dynamic."""
    if network.num_inputs != 1:
        raise UserError(f"expected a classifier with one input, the network has {network.num_inputs}")
    tensor = network.get_input(0)
    shape = tuple(tensor.shape)
    if shape[0] != -1:
        return
    if any(d == -1 for d in shape[1:]):
        raise UserError(f"input {tensor.name!r} has dynamic dimensions {shape} beyond the batch; export it with a "
                        f"fixed image size")
    profile = builder.create_optimization_profile()
    profile.set_shape(tensor.name, (1, *shape[1:]), (opt_batch, *shape[1:]), (max_batch, *shape[1:]))
    config.add_optimization_profile(profile)


@register_exporter("tensorrt")
def tensorrt_engine(net: Any, mean: Any, std: Any, example: Any, out: Path, cfg: Any, *, precision: str,
                    device: str) -> Path:
    """``out/model.engine`` for the row's precision, built on the profile's CUDA ``device``, from the fp32 ONNX
    graph (kept beside it)."""
    from edgekd.export.onnx import export_onnx_for

    onnx_path = export_onnx_for(net, mean, std, example, out, cfg)
    return build_engine(onnx_path, out / "model.engine", precision=precision,  # type: ignore[arg-type]
                        timing_cache=out.parent / "tensorrt-timing.cache", device=device)
