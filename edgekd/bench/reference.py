"""The machine reference of the CI gate: which machine a latency was measured on, and how fast it ran that day.

Latencies measured in two sessions of the same machine differ by the machine's state (clock frequency, neighbours
on a shared host), by the same factor for every model; a confidence interval computed within each session cannot see
it. The gate therefore times a fixed workload beside every artifact, in both sessions: a small CNN built here from a
seeded generator as an ONNX graph (no training, no exporter, so the same bytes on every machine and every version of
torch), run by the artifact's runtime with the artifact's threads and compute precision. The ratio of its medians
between the sessions is the machine ratio the artifact's ratio is divided by.

:func:`machine_identity` names the CPU (model and the instruction-set flags that select a runtime's kernels):
a machine ratio only normalises the speed of one CPU; another CPU changes models' times by different factors.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np

from edgekd.runtimes import RUNTIME_SPECS

#: name of the reference workload; a new workload gets a new name, so baselines of another one are recognised
REFERENCE_NAME = "ref-resnet-3x8x8-v1"
#: file suffix of the reference workload (an ONNX graph)
REFERENCE_SUFFIX = ".onnx"
#: runtimes that can run the reference: those of the capability table that open its ``.onnx`` file, in table order
REFERENCE_RUNTIMES = tuple(name for name, spec in RUNTIME_SPECS.items() if REFERENCE_SUFFIX in spec.suffixes)
#: the reference's input, NCHW with a fixed batch of one
REFERENCE_SHAPE = (1, 3, 8, 8)
_FLAGS_OF_INTEREST = re.compile(r"^(avx\w*|amx\w*|fma|f16c|sse4_2|neon|asimd\w*|sve\w*|fp16|bf16|i8mm|dotprod)$")


def machine_identity(cpuinfo: str | None = None) -> dict[str, Any]:
    """``{"cpu": model, "flags": [...]}``: the CPU model and its instruction-set flags that change kernels (AVX*,
    AMX*, FMA, F16C, NEON/ASIMD*, SVE*, ...), from ``/proc/cpuinfo`` (or the text ``cpuinfo``)."""
    from edgekd.bench.device_runner import cpu_info

    info = cpu_info(cpuinfo)
    return {"cpu": info["model"], "flags": sorted(f for f in info["flags"] if _FLAGS_OF_INTEREST.match(f))}


def machine_difference(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """Why two :func:`machine_identity` records are different machines for the gate, or None when they are one."""
    if old.get("cpu") != new.get("cpu"):
        return f"the baseline was measured on CPU {old.get('cpu')!r}, this session runs on {new.get('cpu')!r}"
    gone = sorted(set(old.get("flags", [])) - set(new.get("flags", [])))
    added = sorted(set(new.get("flags", [])) - set(old.get("flags", [])))
    if gone or added:
        parts = ([f"without {', '.join(gone)}"] if gone else []) + ([f"with {', '.join(added)}"] if added else [])
        return f"this session's CPU has other instruction-set flags than the baseline's ({'; '.join(parts)})"
    return None


def reference_model_bytes() -> bytes:
    """The reference workload as a serialised ONNX model, a small residual CNN of the size of an edge student: a
    stem conv 3→16 (3×3) and ReLU on an 8×8 input, two residual blocks of 16 channels (conv, ReLU, conv, add, ReLU),
    a conv 16→32 (3×3, stride 2) and ReLU, one residual block of 32 channels, global average pool, flatten, fully
    connected 32→10; He-scaled weights drawn from ``numpy.random.default_rng(0)``, input ``x`` of shape
    :data:`REFERENCE_SHAPE`, opset 17."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def conv(x: str, out: str, c_in: int, c_out: int, stride: int = 1, relu: bool = True) -> str:
        values = rng.standard_normal((c_out, c_in, 3, 3)).astype(np.float32) * np.float32(np.sqrt(2 / (9 * c_in)))
        inits.append(numpy_helper.from_array(values, f"{out}_w"))
        nodes.append(helper.make_node("Conv", [x, f"{out}_w"], [f"{out}_c" if relu else out], kernel_shape=[3, 3],
                                      pads=[1, 1, 1, 1], strides=[stride, stride]))
        if relu:
            nodes.append(helper.make_node("Relu", [f"{out}_c"], [out]))
        return out

    def block(x: str, name: str, channels: int) -> str:
        y = conv(conv(x, f"{name}a", channels, channels), f"{name}b", channels, channels, relu=False)
        nodes.append(helper.make_node("Add", [x, y], [f"{name}_sum"]))
        nodes.append(helper.make_node("Relu", [f"{name}_sum"], [name]))
        return name

    h = block(block(conv("x", "stem", REFERENCE_SHAPE[1], 16), "b1", 16), "b2", 16)
    h = block(conv(h, "down", 16, 32, stride=2), "b3", 32)
    inits += [numpy_helper.from_array(rng.standard_normal((10, 32)).astype(np.float32) * np.float32(0.25), "fc"),
              numpy_helper.from_array(np.zeros(10, np.float32), "fc_b")]
    nodes += [helper.make_node("GlobalAveragePool", [h], ["pool"]), helper.make_node("Flatten", ["pool"], ["flat"]),
              helper.make_node("Gemm", ["flat", "fc", "fc_b"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, REFERENCE_NAME,
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(REFERENCE_SHAPE))],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgekd")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def reference_digest() -> str:
    """SHA-256 of :func:`reference_model_bytes`: equal in two sessions exactly when they timed the same workload."""
    return hashlib.sha256(reference_model_bytes()).hexdigest()


@contextmanager
def reference_file() -> Iterator[Path]:
    """The reference model written to a temporary ``.onnx`` file, removed on exit."""
    with TemporaryDirectory(prefix="edgekd-reference-") as tmp:
        path = Path(tmp) / f"{REFERENCE_NAME}{REFERENCE_SUFFIX}"
        path.write_bytes(reference_model_bytes())
        yield path


def reference_input() -> np.ndarray:
    """The reference's input: uniform [0, 1) values from ``numpy.random.default_rng(1)``."""
    return np.random.default_rng(1).random(REFERENCE_SHAPE, dtype=np.float32)
