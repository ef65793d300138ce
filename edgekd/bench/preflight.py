"""Pre-flight: a device profile's target checked in seconds, before any stage runs (DESIGN.md).

What is checked, by ``access.kind``:

- ``ssh``: one ssh call (``BatchMode``, strict host-key checking against ``access.known_hosts``, a short
  ``ConnectTimeout``) that runs the probe (:mod:`edgekd.bench._probe`, sent on standard input) with ``access.python``:
  the host is reachable, its key known, the key accepted, and that Python has numpy and the module of every runtime
  the profile lists (:attr:`edgekd.capabilities.RuntimeSpec.module`), with the execution providers it lists.
- ``adb``: the device is listed by ``adb devices`` in state ``device``, and ``access.perf_binary`` exists on it.
- ``local``: the same probe in this process, plus what each runtime needs of this host (its package's
  ``requirement.unavailable()``, e.g. TensorRT >= 10 with a CUDA device), and the CUDA device index a profile names
  (``cuda:N``) present.

A failure is a :class:`edgekd.errors.UserError` (exit 2) whose one line names the fix. What passed is returned as a
record for the run's manifest: ``{target, python, executable, machine, numpy, runtimes: {name: version}}`` (plus
``providers`` where ONNX Runtime is listed, ``adb`` for an adb target, and ``seconds``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekd.bench import _probe
from edgekd.capabilities import RUNTIME_SPECS, device_index, device_kind
from edgekd.config.device import Access, Device, RuntimeTarget
from edgekd.errors import RuntimeFailure, UserError
from edgekd.runtimes import has_part

CONNECT_TIMEOUT = 5
"""Seconds ssh waits for the connection (``ConnectTimeout``)."""
PROBE_TIMEOUT = 60.0
"""Seconds the probe may take in all (importing torch or TensorRT on a small board takes several)."""
COMMAND_NOT_FOUND = 127
"""A POSIX shell's exit status for a command it cannot find (here: ``access.python``)."""


def preflight(device: Device, runtimes: Sequence[str] | None = None) -> dict[str, Any]:
    """Check ``device``'s target for ``runtimes`` (default: every runtime the profile lists); return the record.

    Raises:
        UserError: the target cannot be reached or lacks something; the message is one line naming the fix.
    """
    start = time.perf_counter()
    targets = [t for t in device.runtimes if runtimes is None or t.runtime in runtimes]
    access = device.access
    if access.kind == "adb":
        record = _adb(access, targets)
    else:
        modules = [RUNTIME_SPECS[t.runtime].module for t in targets]
        if access.kind == "ssh":
            label, found = _ssh_probe(access, modules)
        else:
            label, found = "this machine", _probe.probe(modules)
        record = check_probe(label, found, targets, local=access.kind == "local")
        if access.kind == "local":
            _check_local_devices(targets)
    return {**record, "seconds": round(time.perf_counter() - start, 3)}


def check_probe(label: str, found: dict[str, Any], targets: Sequence[RuntimeTarget], *, local: bool
                ) -> dict[str, Any]:
    """The record of a probe's answer ``found`` (:func:`edgekd.bench._probe.probe`), or a UserError naming what the
    target lacks and how to install it."""
    where = "in this environment" if local else "on the device"
    python = found.get("executable") or "python"
    modules = found.get("modules", {})
    numpy = modules.get("numpy", {})
    if "error" in numpy:
        raise UserError(f"{label}: numpy is not importable by {python} ({numpy['error']}); {where}: pip install numpy")
    versions: dict[str, str | None] = {}
    record: dict[str, Any] = {"target": label, "python": found.get("python"), "executable": python,
                              "machine": found.get("machine"), "numpy": numpy.get("version"), "runtimes": versions}
    for target in targets:
        spec = RUNTIME_SPECS[target.runtime]
        entry = modules.get(spec.module, {"error": "not probed"})
        if "error" in entry:
            raise UserError(f"{label}: the profile lists runtime {target.runtime!r}, but {python} cannot import "
                            f"{spec.module} ({entry['error']}); {where}: {spec.install}")
        versions[target.runtime] = entry.get("version")
        if "providers" in spec.profile_fields and target.providers:
            available = entry.get("providers", [])
            _check_providers(label, target, spec.module, entry.get("version"), available, where)
            record["providers"] = available
    return record


def _check_providers(label: str, target: RuntimeTarget, module: str, version: str | None, available: list[str],
                     where: str) -> None:
    spec = RUNTIME_SPECS[target.runtime]
    for provider in target.providers:
        if provider in available:
            continue
        package = spec.provider_packages.get(provider)
        fix = (f"{where}: pip uninstall -y {module} && pip install {package}" if package is not None
               else f"install a {module} build with {provider} {where}, or remove it from the profile's providers")
        raise UserError(f"{label}: the profile lists execution provider {provider}, but {module} {version} has only "
                        f"{', '.join(available) or 'none'}; {fix}")


def _check_local_devices(targets: Sequence[RuntimeTarget]) -> None:
    """Each runtime's own requirements of this host (its package's ``requirement`` module), and every ``cuda:N`` a
    profile names present on this host."""
    from edgekd.runtime.hardware import install_unavailable

    for target in targets:
        if has_part(target.runtime, "requirement") and (why := install_unavailable(target.runtime)) is not None:
            raise UserError(f"this machine: the profile lists runtime {target.runtime!r}: {why}")
        if device_kind(target.device) != "cuda":
            continue
        import torch

        index = device_index(target.device)
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"this machine: runtime {target.runtime!r} is set to device {target.device}, but torch "
                            f"{torch.__version__} sees no CUDA device; run on a host with an NVIDIA GPU and a CUDA "
                            f"build of torch, or use a CPU profile")
        if index >= count:
            raise UserError(f"this machine: runtime {target.runtime!r} is set to device {target.device}, but torch "
                            f"sees {count} CUDA device(s); set the profile's device to one of "
                            f"{', '.join(f'cuda:{i}' for i in range(count))}")


# -- ssh ----------------------------------------------------------------------------------------------------------

def _ssh_probe(access: Access, modules: list[str]) -> tuple[str, dict[str, Any]]:
    from edgekd.bench.remote import SSH_FAILED, SshTarget, ssh_problem

    target = SshTarget(access, connect_timeout=CONNECT_TIMEOUT)  # checks the key and known_hosts files exist
    try:
        done = target.run_script(Path(_probe.__file__).read_text(), modules, timeout=PROBE_TIMEOUT)
    except RuntimeFailure:
        raise UserError(f"{target.label}: {access.python} did not finish the pre-flight probe within "
                        f"{PROBE_TIMEOUT:.0f} s; check that the device is not overloaded and that importing "
                        f"{', '.join(['numpy', *modules])} works there") from None
    stderr = done.stderr.strip()
    last = stderr.splitlines()[-1] if stderr else "no message"
    if done.returncode == SSH_FAILED:
        raise UserError(ssh_fix(target.label, access, ssh_problem(stderr), last))
    if done.returncode == COMMAND_NOT_FOUND:
        raise UserError(f"{target.label}: {access.python} not found on the device ({last}); install Python 3.8+ "
                        f"there or set access.python to its interpreter")
    try:
        found = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise UserError(f"{target.label}: {access.python} could not run the pre-flight probe (exit "
                        f"{done.returncode}: {last}); set access.python to a Python 3.8+ interpreter") from None
    return target.label, found


def ssh_fix(label: str, access: Access, problem: str, last: str) -> str:
    """One line: why ssh failed (``problem`` of :func:`edgekd.bench.remote.ssh_problem`) and the command that fixes
    it."""
    host, port = access.host, access.port
    known = Path(access.known_hosts).expanduser() if access.known_hosts else "~/.ssh/known_hosts"
    user = f"{access.user}@{host}" if access.user else host
    if problem == "host_key":
        return (f"{label}: the host key is not in access.known_hosts ({known}) or has changed ({last}); check "
                f"the host's fingerprint, then add the host key with ssh-keyscan -p {port} {host} >> {known} (a "
                f"changed key: remove the old one first with ssh-keygen -R '[{host}]:{port}' -f {known})")
    if problem == "key":
        return (f"{label}: the host refused the key {access.identity_file} ({last}); authorize it with ssh-copy-id "
                f"-i {access.identity_file} -p {port} {user}")
    if problem == "unreachable":
        return (f"{label}: cannot reach the host ({last}); check that it is on and that sshd listens on "
                f"{host}:{port} (access.host, access.port)")
    return f"{label}: ssh failed ({last}); try ssh -p {port} -i {access.identity_file} {user} by hand"


# -- adb ----------------------------------------------------------------------------------------------------------

def adb_state(devices_output: str, serial: str | None) -> tuple[str, str]:
    """``(serial, state)`` of the device ``adb devices`` lists (the one with ``serial``, or the only one); a
    UserError naming the fix when it is missing, ambiguous or not usable (``unauthorized``, ``offline``)."""
    listed = [line.split()[:2] for line in devices_output.splitlines()
              if line.strip() and not line.startswith(("List of devices", "*")) and len(line.split()) >= 2]
    label = f"adb://{serial or 'default'}"
    chosen = [d for d in listed if d[0] == serial] if serial else listed
    if not chosen:
        names = ", ".join(d[0] for d in listed) or "none"
        raise UserError(f"{label}: adb devices does not list {'it' if serial else 'any device'} (listed: {names}); "
                        f"connect it with USB debugging on (or adb connect HOST:PORT)")
    if len(chosen) > 1:
        raise UserError(f"{label}: adb lists {len(chosen)} devices ({', '.join(d[0] for d in chosen)}); set "
                        f"access.serial to one of them")
    name, state = chosen[0]
    if state == "unauthorized":
        raise UserError(f"{label}: device {name} is unauthorized; accept the USB debugging prompt on its screen")
    if state != "device":
        raise UserError(f"{label}: device {name} is {state}; reconnect it (adb reconnect) and check adb devices")
    return name, state


def _adb(access: Access, targets: Sequence[RuntimeTarget]) -> dict[str, Any]:
    from edgekd.bench.adb import AdbTarget

    target = AdbTarget(access, timeout=CONNECT_TIMEOUT * 2)  # adb on PATH, perf_binary set
    done = target.adb("devices")
    serial, state = adb_state(done.stdout, access.serial)
    assert access.perf_binary is not None  # the schema requires it for adb
    found = target.shell(["ls", access.perf_binary])
    if found.returncode != 0:
        raise UserError(f"{target.label}: {access.perf_binary} (access.perf_binary) is not on the device; push it "
                        f"with adb push onnxruntime_perf_test {access.perf_binary} && adb shell chmod +x "
                        f"{access.perf_binary}")
    return {"target": target.label, "adb": {"serial": serial, "state": state}, "perf_binary": access.perf_binary,
            "runtimes": {t.runtime: f"as built into {access.perf_binary}" for t in targets}}


def summary(record: dict[str, Any]) -> str:
    """One line for the console: the target and what was found there."""
    found = ", ".join(f"{name} {version}" for name, version in record.get("runtimes", {}).items())
    python = f"Python {record['python']}, numpy {record['numpy']}, " if record.get("python") else ""
    return f"pre-flight {record['target']}: {python}{found} ({record['seconds']:.1f} s)"
