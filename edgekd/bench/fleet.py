"""Device fleets: the same artifacts timed on several device profiles in one call, one executor task per device.

Every device is pre-flighted first (:func:`edgekd.bench.preflight.preflight`), in order, so a device that cannot be
reached ends the call with one line naming it before any timing starts. Then the devices are split into lanes, one
executor task each (:class:`edgekd.executor.Executor`: Ray tasks, or in sequence):

- every remote device (``ssh``, ``adb``) is a lane of its own, so remote boards are timed in parallel;
- all ``local`` devices share one lane and are timed one after another: two timings on this machine at once would
  disturb each other.

A lane times each job (an artifact with its runtime and the runner options of each device that offers it) on each of
its devices and returns one row per (artifact, device): ``{artifact, device, metrics}``, with the device runner's
metrics as a single-device bench gives them. :func:`bench_fleet` returns the rows of every lane, in the order of the
devices given, then of the jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekd.bench.preflight import preflight
from edgekd.config import BenchConfig, Device
from edgekd.errors import EdgekdError, UserError
from edgekd.executor import Executor


@dataclass(frozen=True)
class BenchJob:
    """One artifact to time: its file, runtime, and the runner options of each device that times it (by device
    name; a device not named here skips it)."""

    name: str
    path: Path
    runtime: str
    options: dict[str, dict[str, Any]]
    sample_shape: list[int] | None = field(default=None)


def lanes(devices: Sequence[Device]) -> list[list[Device]]:
    """The executor tasks: every remote device alone, all local devices together (first lane, in their order)."""
    local = [d for d in devices if d.access.kind == "local"]
    return ([local] if local else []) + [[d] for d in devices if d.access.kind != "local"]


def measure(device: Device, job: BenchJob, cfg: BenchConfig) -> dict[str, Any]:
    """The device runner's metrics of ``job`` on ``device`` (this machine, over ssh, or over adb)."""
    from edgekd.bench.measure import LocalTarget, Target, bench_artifact

    options = job.options[device.name]
    if device.access.kind == "adb":
        from edgekd.bench.adb import AdbTarget

        return AdbTarget(device.access).bench(job.path, job.runtime, options, cfg)
    target: Target
    if device.access.kind == "ssh":
        from edgekd.bench.remote import SshTarget

        target = SshTarget(device.access)
    else:
        target = LocalTarget()
    return bench_artifact(job.path, job.runtime, options, cfg, target, job.sample_shape)


def run_lane(jobs: Sequence[BenchJob], cfg: BenchConfig, keep_going: bool, lane: Sequence[Device]
             ) -> list[dict[str, Any]]:
    """Rows ``{artifact, device, metrics}`` of every job on every device of ``lane``, one timing at a time.

    With ``keep_going`` a job that fails on a device (an :class:`edgekd.errors.EdgekdError`: the artifact does not
    load there, the runner crashed) gives a row ``{artifact, device, error}`` and the lane goes on; else it raises.
    """
    rows = []
    for device in lane:
        for job in jobs:
            if device.name not in job.options:
                continue
            try:
                rows.append({"artifact": job.name, "device": device.name, "metrics": measure(device, job, cfg)})
            except EdgekdError as exc:
                if not keep_going:
                    raise
                rows.append({"artifact": job.name, "device": device.name, "error": str(exc)})
    return rows


def check_fleet(devices: Sequence[Device], runtimes: Callable[[Device], Sequence[str]] | None = None
                ) -> dict[str, dict[str, Any]]:
    """Pre-flight every device for ``runtimes(device)`` (default: every runtime its profile lists), in order; the
    records by device name.

    Raises:
        UserError: two devices share a name, or one fails its pre-flight (the line names that device).
    """
    names = [d.name for d in devices]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(f"device {repeated[0]} is given twice; each device of a fleet needs its own profile name")
    records = {}
    for device in devices:
        try:
            records[device.name] = preflight(device, None if runtimes is None else list(runtimes(device)))
        except UserError as exc:
            raise UserError(f"device {device.name}: {exc}") from None
    return records


def bench_fleet(devices: Sequence[Device], jobs: Sequence[BenchJob], cfg: BenchConfig, executor: Executor, *,
                keep_going: bool = False, on_done: Callable[[list[dict[str, Any]]], None] | None = None
                ) -> list[dict[str, Any]]:
    """Time ``jobs`` on ``devices`` (already pre-flighted), one executor task per lane (a single lane runs in this
    process); the rows in device order, then job order. ``keep_going``: see :func:`run_lane`. ``on_done`` gets each
    lane's rows as it finishes."""
    plan = lanes(devices)
    if len(plan) == 1:  # one lane: nothing to run beside it, so no task either
        done = [run_lane(jobs, cfg, keep_going, plan[0])]
        if on_done is not None:
            on_done(done[0])
    else:
        done = executor.map(run_lane, [(lane,) for lane in plan], shared=(list(jobs), cfg, keep_going),
                            on_done=None if on_done is None else lambda _, rows: on_done(rows))
    by_device = {(row["device"], row["artifact"]): row for rows in done for row in rows}
    return [by_device[(d.name, j.name)] for d in devices for j in jobs if (d.name, j.name) in by_device]
