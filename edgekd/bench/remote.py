"""A board reached over ssh: a per-run folder under ``access.workdir``, the device runner run there with a timeout,
its result fetched back, the folder removed.

Only the system ``ssh``/``scp`` binaries, called with argument lists (never a local shell), key-based and with host-key
checking on: ``BatchMode=yes`` (never a password prompt), ``StrictHostKeyChecking=yes``, ``UserKnownHostsFile`` from
the profile, ``IdentitiesOnly`` with the profile's key, ``ConnectTimeout``. The remote command line is built with
``shlex.quote`` around every word, and folder names are edgekd's own (``run-<hex>``), never the device's. The
copies and commands of one run share one connection (``ControlMaster`` with a socket in a private local folder,
closed at the end).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path, PurePosixPath
from typing import Literal

from edgekd.bench.measure import RUNNER_NAME
from edgekd.bench.result import safe_name
from edgekd.config.device import Access
from edgekd.errors import RuntimeFailure, UserError

SSH_FAILED = 255
"""ssh's own exit status for a connection or authentication failure (the remote command's status otherwise)."""


SshProblem = Literal["host_key", "key", "unreachable", "other"]


def ssh_problem(stderr: str) -> SshProblem:
    """What ssh's own error output says went wrong: an unknown or changed host key, a refused key, an unreachable
    host, or something else."""
    lowered = stderr.lower()
    if "host key verification failed" in lowered or "no ed25519 host key is known" in lowered or \
            "host key is known" in lowered or "remote host identification has changed" in lowered:
        return "host_key"
    if "permission denied" in lowered:
        return "key"
    if any(s in lowered for s in ("connection refused", "timed out", "no route to host", "could not resolve",
                                  "network is unreachable", "connection closed", "connection reset")):
        return "unreachable"
    return "other"


def ssh_failure(label: str, stderr: str) -> UserError:
    """One line saying why ssh could not run a command: unreachable host, refused key or unknown host key."""
    text = stderr.strip()
    last = text.splitlines()[-1] if text else "no message"
    problem = ssh_problem(text)
    if problem == "host_key":
        return UserError(f"{label}: the host key is not in access.known_hosts (or changed); check the host's "
                         f"fingerprint and add it with ssh-keyscan ({last})")
    if problem == "key":
        return UserError(f"{label}: the host refused the key access.identity_file ({last})")
    if problem == "unreachable":
        return UserError(f"{label}: cannot reach the host ({last})")
    return UserError(f"{label}: ssh failed ({last})")


class SshTarget:
    """A device profile's ``access`` of kind ``ssh`` as a :class:`edgekd.bench.measure.Target`."""

    def __init__(self, access: Access, connect_timeout: int = 10) -> None:
        if access.kind != "ssh" or not access.host:
            raise UserError("access: an ssh target needs access.kind 'ssh' and access.host")
        if access.identity_file is None or access.known_hosts is None:
            raise UserError("access: ssh needs access.identity_file (a private key) and access.known_hosts "
                            "(host-key checking is always on; passwords are never used)")
        for name, path in (("identity_file", access.identity_file), ("known_hosts", access.known_hosts)):
            if not Path(path).expanduser().is_file():
                raise UserError(f"access.{name}: {path} not found")
        self.access = access
        self.connect_timeout = connect_timeout
        self.host = f"{access.user}@{access.host}" if access.user else access.host
        self.label = f"ssh://{self.host}:{access.port}"
        self.folder = str(PurePosixPath(access.workdir) / f"run-{uuid.uuid4().hex[:12]}")

    def _checked_options(self) -> list[str]:
        """Key only, host key checked against the profile's file, never a prompt, a short connect timeout."""
        access = self.access
        return ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={Path(access.known_hosts).expanduser()}",  # type: ignore[arg-type]
                "-o", "IdentitiesOnly=yes", "-o", "PasswordAuthentication=no",
                "-o", f"ConnectTimeout={self.connect_timeout}",
                "-i", str(Path(access.identity_file).expanduser())]  # type: ignore[arg-type]

    def _options(self) -> list[str]:
        return [*self._checked_options(), "-o", "ControlMaster=auto", "-o", f"ControlPath={self._control}/%C",
                "-o", "ControlPersist=60"]

    def run_script(self, script: str, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """``access.python - ARGS`` on the device with the Python source ``script`` on its standard input, over a
        connection of its own (no shared socket, nothing copied). The exit status is the script's, or
        :data:`SSH_FAILED` when ssh itself failed (its reason in ``stderr``: :func:`ssh_problem`)."""
        words = shlex.join([self.access.python, "-", *args])
        command = ["ssh", *self._checked_options(), "-p", str(self.access.port), self.host, "--", words]
        try:
            return subprocess.run(command, input=script, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeFailure(f"{self.label}: no answer within {timeout:.0f} s ({self.access.python})") from None

    def ssh(self, words: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run ``words`` on the device (each word quoted for the remote shell); ssh failures are UserErrors."""
        args = ["ssh", *self._options(), "-p", str(self.access.port), self.host, "--", shlex.join(words)]
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeFailure(f"{self.label}: no answer within {timeout:.0f} s ({words[0]})") from None
        if done.returncode == SSH_FAILED:
            raise ssh_failure(self.label, done.stderr)
        return done

    def _scp(self, source: str, dest: str, timeout: float = 120) -> None:
        args = ["scp", "-q", *self._options(), "-P", str(self.access.port), source, dest]
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeFailure(f"{self.label}: copy did not finish within {timeout:.0f} s") from None
        if done.returncode != 0:
            if "no such file" in done.stderr.lower():
                raise FileNotFoundError(done.stderr.strip())
            raise ssh_failure(self.label, done.stderr)

    def _remote(self, name: str) -> str:
        return f"{self.host}:{PurePosixPath(self.folder) / safe_name(name)}"

    def __enter__(self) -> SshTarget:
        self._control = tempfile.mkdtemp(prefix="edgekd-ssh-")
        try:
            self._open()
        except BaseException:
            self._close_control()
            raise
        return self

    def _close_control(self) -> None:
        subprocess.run(["ssh", *self._options(), "-p", str(self.access.port), "-O", "exit", self.host],
                       capture_output=True, timeout=10)
        shutil.rmtree(self._control, ignore_errors=True)

    def _open(self) -> None:
        self.ssh(["mkdir", "-p", "-m", "700", self.folder], timeout=self.connect_timeout + 20)

    def __exit__(self, *exc: object) -> None:
        try:
            self.ssh(["rm", "-rf", "--", self.folder], timeout=self.connect_timeout + 20)
        except (UserError, RuntimeFailure):
            pass  # the host went away: nothing more to clean from here
        finally:
            self._close_control()

    def put(self, local: Path, name: str) -> str:
        self._scp(str(local), self._remote(name))
        return safe_name(name)

    def run_runner(self, spec_name: str, result_name: str, timeout: float) -> subprocess.CompletedProcess[str]:
        folder = PurePosixPath(self.folder)
        return self.ssh([self.access.python, str(folder / RUNNER_NAME), str(folder / safe_name(spec_name)),
                         str(folder / safe_name(result_name))], timeout=timeout)

    def fetch(self, name: str, local: Path) -> None:
        self._scp(self._remote(name), str(local))
