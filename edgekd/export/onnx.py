"""ONNX export of a deployable network (normalisation inside the graph) and the parity check of any artifact.

Exporter choice (measured on torch 2.13 CPU, onnxscript 0.7, a 2-conv net): the TorchScript exporter
(``dynamo=False``) takes 0.02–0.2 s, honours ``opset_version`` exactly and writes a single file. The dynamo
exporter takes 1.5–5 s, prints progress to stdout, cannot down-convert to opset 17 (its version converter fails on
``ReduceMean`` and keeps opset 18, silently ignoring the request) and writes weights to a side ``.onnx.data`` file
unless ``external_data=False``. ``dynamo=False`` is also the route NNCF documents for quantized torch models, so
edgekd uses it everywhere.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekd._atomic import atomic_path
from edgekd.errors import UserError
from edgekd.export._private import preserved_mode
from edgekd.runtime import deployable, predict

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def torchscript_onnx_export(model: nn.Module, example: torch.Tensor, path: Path, *, opset: int,
                            dynamic_batch: bool) -> None:
    """``torch.onnx.export(dynamo=False)`` of ``model`` (already deployable) to ``path``: one file, input
    ``"input"``, output ``"logits"``, batch dimension dynamic if ``dynamic_batch``."""
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        # The legacy exporter announces its deprecation on every call; the choice is deliberate (module docstring).
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=axes,
                          do_constant_folding=True)


def export_onnx(net: nn.Module, mean: Sequence[float], std: Sequence[float], example: torch.Tensor, path: Path, *,
                opset: int = 17, dynamic_batch: bool = True) -> Path:
    """Export ``deployable(net, mean, std)`` to a single checked ONNX file at ``path``, written atomically.

    Args:
        net: the plain network, fed normalised input; its train/eval mode is restored afterwards.
        mean, std: per-channel normalisation put in the graph, so the artifact takes raw pixels in [0, 1].
        example: an input batch in [0, 1] (float32 NCHW) fixing channels and spatial size.
        path: the ``.onnx`` file to write.
        opset: ONNX opset.
        dynamic_batch: make the batch dimension symbolic (``"batch"``); otherwise it is ``example``'s.
    """
    import onnx

    with preserved_mode(net), atomic_path(path) as tmp:
        torchscript_onnx_export(deployable(net, mean, std), example, tmp, opset=opset, dynamic_batch=dynamic_batch)
        onnx.checker.check_model(str(tmp), full_check=True)
    return Path(path)


def check_parity(reference: Callable[[np.ndarray], np.ndarray], candidate: Callable[[np.ndarray], np.ndarray],
                 x: np.ndarray, *, atol: float, rtol: float = 0.0, min_top1_agreement: float = 0.999,
                 batch_size: int = 256) -> dict[str, float | bool]:
    """Compare ``candidate``'s logits with ``reference``'s on ``x`` (float32 NCHW in [0, 1]).

    Returns ``max_abs_diff`` (largest absolute logit difference), ``top1_agreement`` (share of samples whose argmax
    agrees) and ``passed``: every logit within ``atol + rtol * |reference logit|`` (``numpy.isclose``'s bound, so a
    reduced precision's rounding, which scales with the logit, is judged relative to it) and ``top1_agreement >=
    min_top1_agreement``; NaN fails. Quantized artifacts are compared with a loose ``atol`` and judged mostly on
    agreement.
    """
    ref = predict(reference, x, batch_size)
    cand = predict(candidate, x, batch_size)
    if ref.shape != cand.shape:
        raise ValueError(f"reference logits {ref.shape} and candidate logits {cand.shape} differ in shape")
    diff = np.abs(ref - cand)
    max_abs_diff = float(np.max(diff))
    agreement = float(np.mean(ref.argmax(axis=1) == cand.argmax(axis=1)))
    within = bool(np.all(diff <= atol + rtol * np.abs(ref)))
    passed = within and agreement >= min_top1_agreement
    return {"max_abs_diff": max_abs_diff, "top1_agreement": agreement, "passed": passed}


def simplify_onnx(path: Path) -> Path:
    """Simplify the ONNX model at ``path`` in place with onnxslim (constant folding, dead-node and redundant-op
    elimination); the export stage's parity check then compares the simplified graph with torch."""
    import importlib.util

    if importlib.util.find_spec("onnxslim") is None:
        raise UserError(f"{path}: export.simplify needs the onnxslim package (pip install 'edgekd[simplify]')")
    import onnx
    import onnxslim

    slim = onnxslim.slim(str(path))
    with atomic_path(path) as tmp:
        onnx.save_model(slim, str(tmp))
    return path


def export_onnx_for(net: nn.Module, mean: Sequence[float], std: Sequence[float], example: torch.Tensor, out: Path,
                    cfg: Any) -> Path:
    """``out/model.onnx`` with the export config's opset and batch, simplified when ``cfg.simplify``: the fp32 graph
    every ONNX-based artifact starts from."""
    path = export_onnx(net, mean, std, example, out / "model.onnx", opset=cfg.opset, dynamic_batch=cfg.dynamic_batch)
    return simplify_onnx(path) if cfg.simplify else path
