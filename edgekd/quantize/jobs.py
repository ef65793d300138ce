"""What a runtime package's quantization engines are given to plan the INT8 artifacts of one runtime of a device.

The quantize stage builds one :class:`Int8Job` per runtime that lists ``int8`` and calls that runtime package's
``quantize.plan(job)`` (post-training engines) and ``quantize.qat_plan(job)`` (the exports of the QAT+KD model).
Each returns :class:`Int8Build` entries, built and checked by the stage, and why any artifact asked for is not built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from torch import nn

from edgekd.capabilities import NncfTarget
from edgekd.config.quantize import QuantizeConfig


class Int8Build(NamedTuple):
    """One INT8 artifact to build: its name (``<source>-<format>-int8-<method>``), format, runtime, the builder
    writing it inside the folder it is given (returning its main file), ``info``: a dict the builder fills with
    what it chose (the stage adds it to the artifact's ``info`` once built; None: nothing to add), and ``twin``: the
    name of an artifact built before it that is the same graph when the builder keeps no node in float
    (``info.mixed.k == 0``), so the stage keeps that one only."""

    name: str
    format: str
    runtime: str
    build: Callable[[Path], Path]
    info: dict[str, Any] | None = None
    twin: str | None = None


@dataclass(frozen=True)
class Int8Job:
    """The INT8 request of one runtime: ``device`` (the runtime's device as the profile names it, e.g. ``cuda:1``,
    where its engines are built), ``stem`` (the source artifact's name), the recipe's quantize config, the
    calibration images, the runtime's NNCF target device, whether ONNX Runtime activations must be symmetric (a
    runtime of the device requires it), ``unmet`` (why this host cannot build the runtime's INT8 artifacts, or None),
    ``fp32(format)`` (the fp32 artifact of a format, made on demand), ``val()`` (validation images and labels),
    ``max_drop(fp32_path)`` (accuracy control's allowed drop), and for QAT ``qat_model()`` (trained on first use,
    once) with the data set's ``mean``/``std`` and an ``example`` input; ``shared``: results computed once per
    quantize stage and used by every runtime's job (the one dict for all of them, keyed by what each result depends
    on, e.g. the sensitivity ranking both mixed-precision engines read)."""

    runtime: str
    device: str
    stem: str
    cfg: QuantizeConfig
    calibration: np.ndarray
    nncf_target: NncfTarget
    symmetric_activations: bool
    unmet: str | None
    fp32: Callable[[str], Path]
    val: Callable[[], tuple[np.ndarray, np.ndarray]]
    max_drop: Callable[[Path], float]
    qat_model: Callable[[], nn.Module]
    mean: Any
    std: Any
    example: Any
    shared: dict[Any, Any] = field(default_factory=dict)

    def name(self, fmt: str, method: str) -> str:
        """The artifact name of ``method``'s INT8 artifact in ``fmt``."""
        return f"{self.stem}-{fmt}-int8-{method}"

    def ort_options(self) -> dict[str, Any]:
        """The ``ort_static_quantize`` options of the recipe and device (the ``ort`` engine's, and the ranking of
        the mixed-precision engines)."""
        return {"per_channel": self.cfg.ort.per_channel, "symmetric_activations": self.symmetric_activations,
                "calibrate_method": self.cfg.ort.calibrate_method}


NO_TORCHAO = "nncf.strip needs the torchao package (pip install torchao)"
"""Why a QAT artifact exported through a plain Q/DQ ONNX graph is not built."""
