"""The ``litert`` runtime: a ``.tflite`` artifact in ``ai_edge_litert``'s interpreter.

It runs through the device runner's own session (:class:`~edgekd.runtimes.litert.session.Session`), so a local
accuracy and a timed loop on a board execute the same code: threads, delegate, a fixed batch resized where the
model's batch is dynamic, float input quantized for full-integer models and integer output dequantized.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekd.errors import RuntimeFailure, UserError
from edgekd.runtime.base import Bound, Runner, first_line, register_runtime
from edgekd.runtimes.litert.session import DELEGATES, LoadError, Session
from edgekd.runtimes.litert.spec import NAME


@register_runtime(NAME, options=("delegate",))
class LiteRtRunner(Runner):
    """``ai_edge_litert.interpreter.Interpreter`` with ``num_threads=threads`` and ``delegate`` (``xnnpack``, the
    default CPU delegate, or ``none`` for the built-in kernels).

    A model whose batch is dynamic is resized to each batch it is given; a fixed batch must match.
    """

    def _load(self, delegate: str = "xnnpack") -> None:
        if delegate not in DELEGATES:
            raise UserError(f"runtime {self.name!r}: delegate {delegate!r} is not one of {', '.join(DELEGATES)}")
        try:
            self.session = Session(str(self.path), {"threads": self.threads, "delegate": delegate})
        except LoadError as exc:
            raise UserError(f"{self.path}: {exc}") from exc

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        return tuple(self.session.input_shape())

    def _bound(self, x: np.ndarray) -> Bound:
        try:
            call, output, _ = self.session.bind(x)
        except LoadError as exc:
            raise RuntimeFailure(f"{self.path}: {exc}") from exc

        def checked() -> None:
            try:
                call()
            except RuntimeError as exc:  # the interpreter's invoke() failing
                raise RuntimeFailure(f"{self.path}: LiteRT invoke failed on a batch of shape {tuple(x.shape)} "
                                     f"({first_line(exc)})") from exc

        return Bound(checked, output)

    def _run(self, x: np.ndarray) -> np.ndarray:
        bound = self._bound(x)
        bound.call()
        return bound.output()

    def bind(self, x: np.ndarray) -> Bound:
        """``x`` set once as the interpreter's input (quantized where the model is full-integer); ``call()`` is one
        ``invoke()``."""
        self._check_input(x)
        bound = self._bound(np.ascontiguousarray(x))
        bound.call()
        return bound

    def describe(self) -> dict[str, Any]:
        return self.session.describe()

    def close(self) -> None:
        self.__dict__.pop("session", None)
