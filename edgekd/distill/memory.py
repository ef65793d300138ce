"""The memory guard: will one training step at the configured batch size fit, before any training starts?

A CPU training step holds, beyond what the process already has resident (weights, data maps, libraries):

* the activations autograd saves for backward — measured exactly, not guessed: the student runs forward once on
  the ``meta`` device (shapes only, nothing allocated) at the configured batch size under
  :func:`torch.autograd.graph.saved_tensors_hooks`, which sees every tensor kept for backward; distinct storages
  are summed, parameters excluded;
* the transient peak of backward and of the teacher's no-grad forward: two of the largest activation each;
* gradients (one copy of the trainable parameters) and the optimiser state (SGD momentum: one, AdamW: two);
* the batch itself in its few forms (gathered, augmented, normalised);
* :data:`KERNEL_OVERHEAD` for what the CPU kernels (oneDNN primitives and workspaces) take on the first step.

All but the fixed terms grow linearly with the batch, so the same figures give the largest batch that fits.
Measured against the growth of ``VmHWM`` over one real SGD step (2 threads; MobileNetV2 at 224 px batches 8 and
32, both layouts; MobileNetV2 ×0.5, ResNet-18 and ResNet-50 at 224 px; ResNet-8 and MobileNetV2 at 32 px), the
activation terms are within -6 %..+14 % of the measured growth (``benchmarks/memory_estimate.py``); :data:`SAFETY`
covers the rest.

Available memory is the smallest of ``MemAvailable`` (``/proc/meminfo``), the cgroup's limit less its usage
(``/sys/fs/cgroup/memory.max``, or v1's ``memory.limit_in_bytes``), and ``$EDGEKD_MEMORY_LIMIT_MB`` (a cap on this
process's resident memory) less what it holds now (:func:`anonymous_resident`: the pages of memory-mapped image
files are reclaimable page cache and do not count).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from edgekd.errors import UserError
from edgekd.models.complexity import meta_copy

SAFETY = 1.25
"""Factor on the estimate before it is compared with the available memory."""
KERNEL_OVERHEAD = 128 << 20
"""Bytes the first step's CPU kernels add beyond tensors (measured 80-125 MiB for the models above)."""
MEMORY_LIMIT_ENV = "EDGEKD_MEMORY_LIMIT_MB"
_CGROUP_FILES = (
    (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")),
    (Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"), Path("/sys/fs/cgroup/memory/memory.usage_in_bytes")),
)
_MIB = 1 << 20


@dataclass(frozen=True)
class StepEstimate:
    """Bytes one training step adds: ``fixed`` (gradients, optimiser state) plus ``per_sample × batch_size``."""

    batch_size: int
    fixed: int
    per_sample: int

    @property
    def total(self) -> int:
        return self.fixed + self.per_sample * self.batch_size

    def largest_batch(self, available: int) -> int:
        """The largest batch whose estimate, times :data:`SAFETY`, fits in ``available`` bytes (0 if none)."""
        return max(0, int((available / SAFETY - self.fixed) // max(1, self.per_sample)))


def _activation_bytes(net: nn.Module, input_shape: tuple[int, ...], batch_size: int, grad: bool) -> tuple[int, int]:
    """(bytes saved for backward, bytes of the largest module output) of one forward at ``batch_size``, on meta."""
    meta = meta_copy(net).train(grad)
    parameters = {p.untyped_storage()._cdata for p in meta.parameters()}
    saved: dict[int, int] = {}
    largest = [0]

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage._cdata not in parameters:
            saved[storage._cdata] = storage.nbytes()
        return tensor

    def track(_module: nn.Module, _args: object, out: object) -> None:
        if isinstance(out, torch.Tensor):
            largest[0] = max(largest[0], out.nbytes)

    handles = [m.register_forward_hook(track) for m in meta.modules() if not list(m.children())]
    x = torch.empty((batch_size, *input_shape), device="meta")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.set_grad_enabled(grad):
        meta(x)
    for handle in handles:
        handle.remove()
    return sum(saved.values()), largest[0]


def estimate_step(net: nn.Module, input_shape: tuple[int, ...], batch_size: int, *, teacher: nn.Module | None,
                  optimizer: str) -> StepEstimate:
    """The memory one training step of ``net`` (and the teacher's forward) adds at ``batch_size``."""
    saved, largest = _activation_bytes(net, input_shape, batch_size, grad=True)
    if teacher is not None:
        largest = max(largest, _activation_bytes(teacher, input_shape, batch_size, grad=False)[1])
    batch = 4 * batch_size * int(torch.Size(input_shape).numel()) * 3
    trainable = sum(p.numel() * p.element_size() for p in net.parameters() if p.requires_grad)
    states = 2 if optimizer == "adamw" else 1
    fixed = trainable * (1 + states) + KERNEL_OVERHEAD
    return StepEstimate(batch_size, fixed, (saved + 2 * largest + batch) // batch_size)


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (no limit) is not a number


def _proc_kib(path: str, field: str) -> int | None:
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def anonymous_resident() -> int:
    """Resident bytes of this process that the kernel cannot simply drop (``RssAnon + RssShmem``): pages of the
    memory-mapped image stores are file-backed and reclaimable, so they do not count against the limit."""
    return sum(_proc_kib("/proc/self/status", field) or 0 for field in ("RssAnon", "RssShmem"))


def available_memory() -> tuple[int, str] | None:
    """(bytes this process may still use, which limit says so), or None when nothing can be read."""
    found: list[tuple[int, str]] = []
    if (free := _proc_kib("/proc/meminfo", "MemAvailable")) is not None:
        found.append((free, "MemAvailable in /proc/meminfo"))
    for limit_file, usage_file in _CGROUP_FILES:
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 1 << 60:
            found.append((limit - usage, f"cgroup limit {limit // _MIB:,} MiB ({limit_file}) less its usage"))
    if cap := os.environ.get(MEMORY_LIMIT_ENV):
        try:
            cap_bytes = int(float(cap) * _MIB)
        except ValueError:
            raise UserError(f"${MEMORY_LIMIT_ENV}: expected a number of MiB, got {cap!r}") from None
        resident = anonymous_resident()
        found.append((cap_bytes - resident, f"${MEMORY_LIMIT_ENV}={cap} less the {resident // _MIB:,} MiB resident"))
    return min(found) if found else None


def check_step_fits(net: nn.Module, input_shape: tuple[int, ...], batch_size: int, *, teacher: nn.Module | None,
                    optimizer: str, label: str) -> dict[str, object]:
    """Raise UserError (exit 2) with the estimate and the largest batch size that fits, when one step at
    ``batch_size`` would not fit in the available memory; else return the figures for the manifest."""
    try:
        estimate = estimate_step(net, input_shape, batch_size, teacher=teacher, optimizer=optimizer)
    except (RuntimeError, NotImplementedError, TypeError) as error:  # a net that cannot run on meta (e.g. fake-
        return {"skipped": f"no estimate on the meta device ({type(error).__name__})"}  # quantised for QAT)
    available = available_memory()
    record: dict[str, object] = {**asdict(estimate), "estimate_mib": round(estimate.total / _MIB),
                                 "safety": SAFETY}
    if available is None:
        return record
    free, source = available
    record.update(available_mib=round(free / _MIB), limited_by=source)
    if estimate.total * SAFETY > free:
        fits = estimate.largest_batch(free)
        advice = (f"set train.batch_size to {fits} or less" if fits else
                  "even one sample does not fit: lower the image size or pick a smaller model")
        raise UserError(
            f"{label}: one training step at batch size {batch_size} needs about {estimate.total / _MIB:,.0f} MiB "
            f"(x{SAFETY} margin: {estimate.total * SAFETY / _MIB:,.0f} MiB) but {max(0, free) / _MIB:,.0f} MiB are "
            f"available ({source}); {advice}"
        )
    record["largest_batch"] = estimate.largest_batch(free)
    return record
