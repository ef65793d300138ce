"""TensorRT engine build from an ONNX artifact with the TensorRT Python API, on TensorRT 10 and 11.

An engine is tied to the GPU architecture and the TensorRT version that built it: build it on the target device.

Precision policy (the precision asked for is the precision of the engine, or the build fails with a UserError):

- ``fp32``: an fp32 graph without Q/DQ nodes.
- ``fp16``: TensorRT 10 builds the fp32 graph with ``BuilderFlag.FP16`` (weak typing). TensorRT 11 is strongly typed
  only and removed that flag: the graph itself must be fp16, so an fp32 graph is converted with onnxconverter-common
  (``convert_float_to_float16(keep_io_types=True)``) when it is installed, else the build stops and says so.
- ``int8``: explicit quantization only: the graph must carry QuantizeLinear/DequantizeLinear pairs with zero points
  of 0 (TensorRT supports symmetric quantization only; make it with ``ort_static_quantize(...,
  symmetric_activations=True)``). TensorRT 10 sets ``BuilderFlag.INT8``; TensorRT 11 takes the types from the graph.
  Implicit (calibrator) INT8 is deprecated in 10 and gone in 11, so it is not offered.

A dynamic batch dimension gets one optimisation profile ``(1, opt_batch, max_batch)``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgekd._atomic import atomic_write_bytes
from edgekd.errors import UserError
from edgekd.runtime import first_line
from edgekd.runtime.tensorrt_runner import TENSORRT_MISSING

Precision = Literal["fp32", "fp16", "int8"]


def inspect_onnx_precision(onnx_path: Path) -> dict[str, Any]:
    """What the graph at ``onnx_path`` says about its precision: ``qdq`` (has QuantizeLinear nodes),
    ``symmetric`` (every Q/DQ zero point is 0), ``fp16`` (has float16 initializers)."""
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:  # protobuf raises DecodeError and others for a corrupt file
        raise UserError(f"{onnx_path}: not a readable ONNX model ({first_line(exc)})") from exc
    inits = {i.name: i for i in model.graph.initializer}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    zero_points = [numpy_helper.to_array(inits[n.input[2]]) for n in qdq if len(n.input) > 2 and n.input[2] in inits]
    return {
        "qdq": bool(qdq),
        "symmetric": all(not np.any(zp) for zp in zero_points),
        "fp16": any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer),
    }


def _check_graph(onnx_path: Path, precision: Precision) -> dict[str, Any]:
    """The graph facts, or a UserError when the graph cannot give an engine of ``precision``."""
    facts = inspect_onnx_precision(onnx_path)
    if precision == "int8" and not facts["qdq"]:
        raise UserError(f"{onnx_path}: TensorRT int8 needs a Q/DQ graph; quantize it first "
                        f"(ort_static_quantize with symmetric_activations=True)")
    if precision == "int8" and not facts["symmetric"]:
        raise UserError(f"{onnx_path}: TensorRT supports symmetric quantization only, this graph has non-zero zero "
                        f"points; quantize with symmetric_activations=True")
    if precision != "int8" and facts["qdq"]:
        raise UserError(f"{onnx_path}: this graph has Q/DQ nodes, so its TensorRT engine is int8, not {precision}")
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
                 max_batch: int = 64) -> Path:
    """Build a TensorRT engine from ``onnx_path`` and write it atomically to ``engine_path``.

    Args:
        precision: ``fp32``, ``fp16`` or ``int8`` (see the module docstring for what each needs).
        timing_cache: a file read before the build (if present) and rewritten after it, so rebuilds are fast.
        workspace_mb: the builder's workspace memory pool limit in MiB.
        opt_batch, max_batch: the optimisation profile of a dynamic batch dimension (min is 1).
    """
    if precision not in ("fp32", "fp16", "int8"):
        raise UserError(f"TensorRT precision must be fp32, fp16 or int8, got {precision!r}")
    if workspace_mb < 1 or not 1 <= opt_batch <= max_batch:
        raise ValueError(f"need workspace_mb >= 1 and 1 <= opt_batch <= max_batch, got {workspace_mb}, "
                         f"{opt_batch}, {max_batch}")
    facts = _check_graph(Path(onnx_path), precision)
    try:
        import tensorrt as trt
    except ImportError:
        raise UserError(f"{engine_path}: {TENSORRT_MISSING}") from None

    strongly_typed = int(trt.__version__.split(".")[0]) >= 11
    logger = _error_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if not strongly_typed and precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16 if precision == "fp16" else trt.BuilderFlag.INT8)
    with tempfile.TemporaryDirectory(prefix="edgekd-trt-") as work:
        source = Path(onnx_path)
        if strongly_typed and precision == "fp16" and not facts["fp16"]:
            source = _to_fp16_graph(source, Path(work))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(source)):
            errors = "; ".join(str(parser.get_error(i)).replace("\n", " ") for i in range(parser.num_errors))
            raise UserError(f"{onnx_path}: TensorRT cannot parse this model ({errors or 'no error message'})")
    _add_batch_profile(builder, network, config, opt_batch, max_batch)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache and timing_cache.exists() else b"")
    config.set_timing_cache(cache, False)  # False: refuse a cache from another GPU or TensorRT
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        reason = logger.errors[-1].replace("\n", " ") if logger.errors else "no error message"
        raise UserError(f"{onnx_path}: TensorRT {trt.__version__} failed to build a {precision} engine ({reason})")
    atomic_write_bytes(engine_path, bytes(memoryview(serialized)))
    if timing_cache is not None:
        atomic_write_bytes(timing_cache, bytes(memoryview(cache.serialize())))
    return Path(engine_path)


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
