"""The ``torch`` runtime: an edgekd torch artifact run eagerly in PyTorch (the reference every export is checked
against)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from edgekd.errors import UserError
from edgekd.runtime.base import Runner, register_runtime
from edgekd.runtime.precision import bf16_unsupported
from edgekd.runtime.torch_artifact import load_torch_artifact


@register_runtime("torch", options=("device", "inference_precision"))
class TorchRunner(Runner):
    """Eager PyTorch. Options: ``device`` (``cpu``, ``cuda``, ``cuda:N``; default ``cpu``) and
    ``inference_precision`` (``f32``, default; or ``bf16``: autocast to bfloat16, where the hardware has it).

    ``threads`` calls ``torch.set_num_threads``, which is process-wide: the previous count is restored by
    :meth:`close` (or leaving the ``with`` block), so a runner does not change the threads of later training.
    """

    def _load(self, device: str = "cpu", inference_precision: str = "f32") -> None:
        device = device.lower()
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"runtime 'torch': device {device!r} requested but this torch has no CUDA")
        try:
            self.device = torch.device(device)
        except RuntimeError as exc:
            raise UserError(f"runtime 'torch': invalid device {device!r}; expected cpu, cuda or cuda:N") from exc
        if inference_precision not in ("f32", "fp32", "bf16"):
            raise UserError(f"runtime 'torch': inference_precision {inference_precision!r} is not one of f32, bf16")
        self.bf16 = inference_precision == "bf16"
        if self.bf16 and (reason := bf16_unsupported("torch")) is not None:
            raise UserError(f"{self.path}: bf16 requested but {reason}")
        self._threads_before = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        self.net = load_torch_artifact(self.path).to(self.device)
        channels = self.net.normalize.mean.shape[1]
        self._shape: tuple[int | None, ...] = (None, channels, None, None)

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        return self._shape

    def _run(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.net(torch.from_numpy(x).to(self.device)).float().cpu().numpy()

    def close(self) -> None:
        torch.set_num_threads(self._threads_before)

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.name, "version": torch.__version__, "device": str(self.device),
                "threads": torch.get_num_threads(), "inference_precision": "bf16" if self.bf16 else "f32"}
