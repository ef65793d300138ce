"""Multi-process training under ``torchrun``: who this process is, the process group, and the collectives edgekd uses.

``torchrun --nproc_per_node=N`` (``python -m torch.distributed.run``) starts one process per device and sets
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``. Without it every helper here is the single-process case: rank 0 of 1,
barriers and reductions are no-ops. The backend is NCCL when CUDA is available (one GPU per local rank), else gloo.
Only rank 0 writes files; the others read what rank 0 wrote (the run folder is on a shared filesystem). Code that
one rank runs alone while the others wait (a non-distributed stage) runs inside :func:`solo`, where it sees a world
of one process and uses no collective.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

#: How long a rank waits in a collective. Ranks wait in a barrier while rank 0 runs a non-distributed stage (export,
#: bench, ...), which may take long; a crashed rank still ends the run at once, because torchrun stops the others.
COLLECTIVE_TIMEOUT = timedelta(hours=12)

_solo: ContextVar[bool] = ContextVar("edgekd_solo", default=False)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """More than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes files and prints progress."""
        return self.rank == 0


def world() -> World:
    """Rank, world size and local rank: from the process group when one is running, else from torchrun's env
    (inside :func:`solo`: a world of one)."""
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if _solo.get():
        return World(0, 1, local_rank)
    if active():
        return World(dist.get_rank(), dist.get_world_size(), local_rank)
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), local_rank)


def active() -> bool:
    """A process group with more than one rank is running, outside :func:`solo` (the trainer then uses DDP)."""
    return not _solo.get() and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@contextmanager
def solo() -> Iterator[None]:
    """Run the block as a single process: rank 0 doing work alone while the other ranks wait at a barrier."""
    token = _solo.set(True)
    try:
        yield
    finally:
        _solo.reset(token)


def is_main() -> bool:
    """This process is rank 0 (always true without torchrun)."""
    return world().is_main


def init_process_group() -> bool:
    """Join the process group torchrun describes (NCCL on CUDA, else gloo); True when this call created it.

    A no-op (False) outside torchrun, with one process, or when a group is already running.
    """
    here = world()
    if not here.distributed or not dist.is_available() or dist.is_initialized():
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(here.local_rank)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", timeout=COLLECTIVE_TIMEOUT)
    return True


def destroy_process_group() -> None:
    """Leave the process group, if one is running."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def device() -> torch.device:
    """The device this process trains on: its local GPU when CUDA is available, else the CPU."""
    return torch.device("cuda", world().local_rank) if torch.cuda.is_available() else torch.device("cpu")


def barrier() -> None:
    """Wait until every rank gets here (no-op in a single process)."""
    if active():
        dist.barrier()


def shard(n: int, here: World | None = None) -> tuple[int, int]:
    """``(start, stop)`` of this rank's contiguous part of ``n`` items, as :func:`torch.tensor_split` cuts them.

    The first ``n % world_size`` ranks get one item more; a rank gets nothing when ``n < world_size``.
    """
    here = here or world()
    base, extra = divmod(n, here.world_size)
    start = here.rank * base + min(here.rank, extra)
    return start, start + base + (here.rank < extra)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the ranks, in place (no-op in a single process); returns it."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def average_gradients(params: list[nn.Parameter]) -> None:
    """Average the gradients of ``params`` over the ranks, for parameters outside the DDP-wrapped model."""
    if not active():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if grads:
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= dist.get_world_size()
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()


def broadcast_state(module: nn.Module, src: int = 0) -> None:
    """Copy every parameter and buffer of ``module`` from rank ``src`` to the others (no-op in a single process)."""
    if not active():
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.is_contiguous():
            dist.broadcast(tensor.data, src=src)
        else:  # e.g. channels-last weights: collectives take dense row-major tensors
            dense = tensor.data.contiguous()
            dist.broadcast(dense, src=src)
            tensor.data.copy_(dense)


def broadcast_flag(flag: bool, src: int = 0) -> bool:
    """Rank ``src``'s ``flag`` on every rank (a one-element tensor, no pickling); ``flag`` in a single process."""
    if not active():
        return flag
    box = torch.tensor([int(flag)], dtype=torch.int64, device=device() if dist.get_backend() == "nccl" else "cpu")
    dist.broadcast(box, src=src)
    return bool(box.item())
