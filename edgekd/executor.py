"""One executor for many independent sub-runs: Ray tasks when Ray is installed, else the same calls in sequence.

A sub-run is a call ``fn(*shared, *args)`` of a module-level function (workers import it by name) that writes its
own result into its content-keyed folder before returning, so a finished sub-run is found there by the next attempt
and never recomputed. :meth:`Executor.map` runs a list of them and returns their results in order.

- ``sequential``: in this process, one after the other.
- ``ray``: one Ray task per sub-run, reserving ``threads_per_task`` CPUs and ``gpus_per_task`` GPUs; ``shared``
  arguments (the data, the teacher) go to the object store once. Without an address (recipe ``execution.address``,
  ``--ray-address`` or ``$RAY_ADDRESS``) a local Ray is started in-process; with one the tasks go to that cluster,
  whose nodes must see the run directory at the same path (a shared filesystem). A task whose worker process dies
  is re-run up to ``max_retries`` times (it resumes from what its folder holds); an exception raised by the task
  itself is not retried and ends the map with that exception. On Ctrl-C (or a task's error) the driver's Ray
  session ends, which stops the remaining tasks. A local Ray that fails to start under backend ``auto`` gives way
  to ``sequential`` (with a warning).

Every sub-run runs with ``torch.set_num_threads(threads_per_task)`` on either backend, so the same seeds give the
same numbers sequentially, on a local Ray or on a cluster.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from rich.console import Console

from edgekd.config import ExecutionConfig
from edgekd.errors import UserError

R = TypeVar("R")


def ray_available() -> bool:
    """Ray is importable (the ``[ray]`` extra is installed)."""
    return importlib.util.find_spec("ray") is not None


def _call(fn: Callable[..., R], threads: int, *args: Any) -> R:
    """``fn(*args)`` with ``threads`` torch threads (the caller's count restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(before)


class Executor:
    """Runs independent sub-runs on the backend ``config`` names (see the module docstring)."""

    def __init__(self, config: ExecutionConfig | None = None) -> None:
        self.config = config or ExecutionConfig()
        if self.config.backend == "ray" and not ray_available():
            raise UserError("execution.backend is 'ray' but Ray is not installed: pip install 'edgekd[ray]'")
        self.backend = "ray" if self.config.backend != "sequential" and ray_available() else "sequential"

    @property
    def address(self) -> str | None:
        """The cluster the tasks go to; None: a local Ray started in-process."""
        return self.config.address or os.environ.get("RAY_ADDRESS") or None

    def describe(self) -> str:
        """One line for logs: backend, where, threads per task."""
        where = "" if self.backend == "sequential" else f" at {self.address}" if self.address else " (local)"
        return f"{self.backend}{where}, {self.config.threads_per_task} thread(s) per task"

    def map(self, fn: Callable[..., R], tasks: Sequence[tuple[Any, ...]], *, shared: tuple[Any, ...] = (),
            on_done: Callable[[int, R], None] | None = None) -> list[R]:
        """``[fn(*shared, *args) for args in tasks]``; ``on_done(index, result)`` is called as each one finishes."""
        if self.backend == "ray" and tasks:
            self._connect()
        if self.backend == "sequential" or not tasks:
            results = []
            for index, args in enumerate(tasks):
                results.append(_call(fn, self.config.threads_per_task, *shared, *args))
                if on_done is not None:
                    on_done(index, results[-1])
            return results
        return self._map_ray(fn, tasks, shared, on_done)

    def _connect(self) -> Any:
        """Start or join Ray. A local Ray that fails to start (e.g. its processes time out on a loaded machine) under
        backend ``auto`` gives way to the sequential backend, which gives the same results; a cluster that cannot be
        reached, or a failure under backend ``ray``, is a UserError."""
        import ray

        if not ray.is_initialized():
            try:
                # "local": without an address, a fresh Ray of this process, never the machine's last started
                # cluster (which ray.init(address=None) would join, from /tmp/ray/ray_current_cluster)
                ray.init(address=self.address or "local", include_dashboard=False, log_to_driver=True,
                         configure_logging=False)
            except Exception as exc:  # Ray raises plain Exception, ConnectionError or TimeoutError here
                ray.shutdown()
                if self.address is not None or self.config.backend == "ray":
                    where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
                    raise UserError(f"could not start or reach {where}: {exc}") from exc
                Console(stderr=True).print(f"[yellow]warning[/yellow]: a local Ray did not start ({exc}); running "
                                           "the sub-runs in sequence (same results)")
                self.backend = "sequential"
        return ray

    def _map_ray(self, fn: Callable[..., R], tasks: Sequence[tuple[Any, ...]], shared: tuple[Any, ...],
                 on_done: Callable[[int, R], None] | None) -> list[R]:
        import ray
        from ray.exceptions import RayTaskError

        cfg = self.config
        remote = ray.remote(num_cpus=cfg.threads_per_task, num_gpus=cfg.gpus_per_task, max_retries=cfg.max_retries,
                            retry_exceptions=False)(_call)
        stored = [ray.put(value) for value in shared]
        refs = [remote.remote(fn, cfg.threads_per_task, *stored, *args) for args in tasks]
        index = {ref: i for i, ref in enumerate(refs)}
        results: dict[int, R] = {}
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for ref in ready:
                    try:
                        results[index[ref]] = ray.get(ref)
                    except RayTaskError as exc:
                        raise (exc.cause if isinstance(exc.cause, BaseException) else exc) from None
                    if on_done is not None:
                        on_done(index[ref], results[index[ref]])
        except BaseException:
            # Ctrl-C or a task's own error: end this driver's Ray session, which stops its tasks (Ray kills the
            # workers of a finished job on every node). Cancelling them one by one (ray.cancel(force=True)) races
            # with a task finishing at that moment, and Ray then aborts the process ("Tried to complete task that
            # was not pending").
            ray.shutdown()
            raise
        return [results[i] for i in range(len(refs))]
