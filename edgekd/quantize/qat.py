"""Quantization-aware training (QAT) with NNCF's torch backend, and its export to a plain QDQ ONNX artifact.

NNCF's QAT recipe (NNCF documentation, "Use NNCF for Quantization-Aware Training in PyTorch"): run post-training
quantization on the torch model (``nncf.quantize``), which inserts fake-quantizers initialised from calibration
statistics, then fine-tune the returned model with the usual training loop (a small learning rate, a few epochs):
the fake-quantizers pass gradients with the straight-through estimator and their scales are learnt too.

Export: a NNCF-quantized model exported to ONNX as is carries ``org.openvinotoolkit:FakeQuantize`` nodes, which ONNX
Runtime rejects. ``nncf.strip(..., strip_format=NATIVE)`` swaps them for torch's own fake-quantizers (it needs the
``torchao`` package), which the TorchScript exporter writes as QuantizeLinear/DequantizeLinear pairs, with float
weights behind the QuantizeLinear and a BatchNormalization after each convolution;
:func:`~edgekd.quantize.qdq_fold.lean_qdq` folds both away, leaving int8 weights behind DequantizeLinear as PTQ
does, and the graph as fast as PTQ's (ONNX Runtime fuses DQ → Conv → Q into QLinearConv). For OpenVINO, no strip
is needed: :func:`~edgekd.runtimes.openvino.exporter.export_openvino` converts the quantized model itself to an INT8 IR.

NNCF's torch backend compiles a C++ extension on first use (about 2 minutes on a busy 2-core machine; needs a C++
compiler and ninja; cached in ``~/.cache/torch_extensions``). NNCF gives up after ``NNCF_EXTENSION_LOAD_TIMEOUT``
seconds (default 60); unless the user set it, :func:`nncf_qat_prepare` allows ``EXTENSION_BUILD_SECONDS``.

Recipe snippet::

    quantize:
      qat: {teacher: student, train: {epochs: 2, lr: 1.0e-4}}
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekd._atomic import atomic_path
from edgekd._imports import quiet_import
from edgekd.errors import UserError
from edgekd.export.onnx import export_onnx
from edgekd.quantize._private import check_calibration, nncf_options, quiet, split_batches
from edgekd.quantize.nncf_quantize import Preset, TargetDevice
from edgekd.quantize.qdq_fold import lean_qdq
from edgekd.runtime import Normalize

EXTENSION_BUILD_SECONDS = 900
"""Time NNCF may take to compile its torch extension when ``NNCF_EXTENSION_LOAD_TIMEOUT`` is not set."""


@contextlib.contextmanager
def _extension_build_time() -> Iterator[None]:
    """Set ``NNCF_EXTENSION_LOAD_TIMEOUT`` to ``EXTENSION_BUILD_SECONDS`` for the duration, unless the user set it."""
    key = "NNCF_EXTENSION_LOAD_TIMEOUT"
    if key in os.environ:
        yield
        return
    os.environ[key] = str(EXTENSION_BUILD_SECONDS)
    try:
        yield
    finally:
        os.environ.pop(key, None)


def nncf_qat_prepare(net: nn.Module, calibration: np.ndarray, *, mean: Sequence[float], std: Sequence[float],
                     subset_size: int = 300, preset: Preset = "performance",
                     target_device: TargetDevice = "ANY") -> nn.Module:
    """The plain network ``net`` (fed normalised input) with NNCF fake-quantizers, ready to be fine-tuned.

    Args:
        net: the fp32 plain network; it is copied by NNCF, not changed.
        calibration: float32 NCHW samples in [0, 1] from the train split; normalised with ``mean``/``std`` here, so
            the returned model, like ``net``, takes normalised input and trains in the caller's trainer unchanged.
        subset_size, preset, target_device: as in :func:`~edgekd.quantize.nncf_ptq`.

    Returns:
        The quantized model in eval mode; call ``.train()`` before fine-tuning it.
    """
    import nncf

    normalize = Normalize(mean, std)
    device = next(net.parameters()).device
    with torch.no_grad():
        samples = [normalize(torch.from_numpy(b)).to(device) for b in split_batches(check_calibration(calibration),
                                                                                     None)]
    was_training = net.training
    net.eval()
    try:
        with quiet(), _extension_build_time():
            quantized = nncf.quantize(net, nncf.Dataset(samples), subset_size=subset_size,
                                      **nncf_options(preset, target_device))
    finally:
        net.train(was_training)
    return quantized.eval()


def strip_qat_to_onnx(qmodel: nn.Module, mean: Sequence[float], std: Sequence[float], example: torch.Tensor,
                      path: Path, *, opset: int = 17, dynamic_batch: bool = True) -> Path:
    """Export a model from :func:`nncf_qat_prepare` (after fine-tuning) to a QDQ ONNX artifact ONNX Runtime runs.

    ``nncf.strip(do_copy=True, strip_format=NATIVE)``, :func:`~edgekd.export.export_onnx` (TorchScript exporter)
    with the normalisation in front, then :func:`~edgekd.quantize.qdq_fold.lean_qdq` (int8 weight initializers,
    batch norms folded into the weight scales); ``example`` is a batch in [0, 1] as for any export.

    Raises:
        UserError: ``torchao`` (needed by ``nncf.strip``) is not installed.
    """
    import nncf
    import onnx

    if importlib.util.find_spec("torchao") is None:
        raise UserError(f"{path}: exporting a QAT model needs nncf.strip, which needs the torchao package "
                        f"(pip install torchao)")
    quiet_import("torchao")  # what nncf.strip imports; its import logs about CUDA kernels a CPU cannot load
    normalize = Normalize(mean, std).to(example.device)
    qmodel.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # NNCF's hooks, traced by strip and by the exporter
        stripped = nncf.strip(qmodel, do_copy=True, strip_format=nncf.StripFormat.NATIVE,
                              example_input=normalize(example))
        with tempfile.TemporaryDirectory(prefix="edgekd-qat-") as work:
            exported = export_onnx(stripped, mean, std, example, Path(work) / "model.onnx", opset=opset,
                                   dynamic_batch=dynamic_batch)
            model = onnx.load(str(exported))
    lean_qdq(model)
    _check_plain_qdq(model, path)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
    return Path(path)


def _check_plain_qdq(model: Any, path: Path) -> None:
    """Raise if the graph of ``model`` (to be written to ``path``) still has NNCF's custom FakeQuantize ops, has no
    Q/DQ at all, or still quantizes a constant (a float weight left behind a QuantizeLinear)."""
    graph = model.graph
    nodes: list[Any] = list(graph.node)
    custom = sorted({f"{n.domain}:{n.op_type}" for n in nodes if n.domain not in ("", "ai.onnx")})
    if custom:
        raise RuntimeError(f"{path}: the stripped QAT model still exports custom ops {custom}")
    if not any(n.op_type == "QuantizeLinear" for n in nodes):
        raise RuntimeError(f"{path}: the stripped QAT model exported without QuantizeLinear nodes")
    constants = {i.name for i in graph.initializer}
    if any(n.op_type == "QuantizeLinear" and n.input[0] in constants for n in nodes):
        raise RuntimeError(f"{path}: a QuantizeLinear of a constant was left unfolded")
