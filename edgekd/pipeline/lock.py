"""One writer per run directory: an exclusive OS lock on ``RUN/.lock`` for the whole of a run.

The lock is ``flock(LOCK_EX | LOCK_NB)`` on an open file inside the run directory, so the kernel releases it when the
holding process ends in any way (``kill -9`` included): a killed run leaves no stale lock and resumes at once. The
file's text names the holder (``{"pid", "started", "host"}`` as JSON) for the one-line refusal a second run gets.
It is rewritten in place, not by rename (a rename would swap the inode the other process is locking): a reader may
see it empty or half written and then says the holder is unknown.

Under ``torchrun`` the ranks of one job share the directory: rank 0 takes the lock and tells the other ranks whether
it got it, so a refused job ends on every rank with the same message; the other ranks never lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from edgekd import _distributed as dist
from edgekd.errors import UserError

LOCK_FILE = ".lock"


def _holder(lock_path: Path) -> str:
    """Who holds the lock, as the lock file says (pid, start time, host)."""
    try:
        who = json.loads(lock_path.read_text())
        return f"pid {who['pid']} on {who['host']}, started {who['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not written its name yet"


def _refusal(run_dir: Path) -> UserError:
    return UserError(f"{run_dir}: another edgekd run is writing this run directory ({_holder(run_dir / LOCK_FILE)}); "
                     f"wait for it to end or choose another --out")


def acquire(run_dir: Path) -> int:
    """Lock ``run_dir`` (created if missing) for this process; the open file descriptor holding the lock.

    Raises:
        UserError: another process holds the lock (the message names its pid and start time).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise _refusal(run_dir) from None
    except BaseException:
        os.close(fd)
        raise
    who = {"pid": os.getpid(), "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "host": socket.gethostname()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(who) + "\n").encode(), 0)
    return fd


def release(fd: int) -> None:
    """Give the lock up (the file stays: removing it would let two runs lock two different files)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock for the block; under ``torchrun`` rank 0 holds it for the job.

    Raises:
        UserError: another run holds the lock (on every rank of a refused job).
    """
    fd, refused = None, None
    if dist.is_main():
        try:
            fd = acquire(run_dir)
        except UserError as exc:
            refused = exc
    if not dist.broadcast_flag(refused is None):
        raise refused or _refusal(run_dir)
    try:
        yield
    finally:
        if fd is not None:
            release(fd)
