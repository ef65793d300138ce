"""Pre-flight: each target checked before any stage, every failure one line naming the fix, exit 2, within seconds.

The ssh cases use the real sshd on 127.0.0.1 of :mod:`tests.test_remote`. The "device Python without the runtime" is a
real interpreter: a venv made here from this Python's base installation, without pip, that sees numpy (a ``.pth``
file pointing at a folder holding this environment's numpy) and nothing else of this environment.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

import numpy
import pytest

from edgekd.bench._probe import probe
from edgekd.bench.preflight import adb_state, check_probe, preflight
from edgekd.config.device import Access, Device
from edgekd.errors import UserError
from tests.conftest import ROOT, run_cli
from tests.test_remote import SSHD, _free_port, _keygen, sshd  # noqa: F401  (sshd is the module's fixture)

QUICKSTART = ROOT / "pipelines" / "quickstart.yaml"
needs_sshd = pytest.mark.skipif(not SSHD.exists() or shutil.which("ssh") is None,
                                reason="needs Debian's openssh-server (/usr/sbin/sshd) and the ssh client")
FAST = 20.0
"""Seconds a pre-flight may take, failing or not."""
COMMAND = 60.0
"""Seconds a failing ``edgekd run`` may take from its start: Python, edgekd's imports and the stages' own checks (the
data set loaded, the models built) come before the pre-flight; a run that reached the bench stage took minutes."""


def _device(access: Access, *runtimes: dict) -> Device:
    return Device.model_validate({"name": "t", "access": access.model_dump(),
                                  "runtimes": list(runtimes) or [{"runtime": "onnxruntime"}]})


# -- the probe and its reading --------------------------------------------------------------------------------------

def test_probe_reports_the_versions_the_installed_distributions_declare() -> None:
    found = probe(["onnxruntime", "edgekd_no_such_module"])
    assert found["python"] == ".".join(map(str, sys.version_info[:3])) and found["executable"] == sys.executable
    assert found["modules"]["numpy"] == {"version": importlib.metadata.version("numpy")}
    ort = found["modules"]["onnxruntime"]
    assert ort["version"] == importlib.metadata.version("onnxruntime")
    import onnxruntime

    assert ort["providers"] == onnxruntime.get_available_providers()
    assert found["modules"]["edgekd_no_such_module"] == {
        "error": "ModuleNotFoundError: No module named 'edgekd_no_such_module'"}


def _found(**modules: dict) -> dict:
    return {"python": "3.10.12", "executable": "/usr/bin/python3", "machine": "aarch64",
            "modules": {"numpy": {"version": "1.26.4"}, **modules}}


def test_probe_answer_becomes_the_manifest_record() -> None:
    device = _device(Access(), {"runtime": "onnxruntime", "providers": ["CPUExecutionProvider"]},
                     {"runtime": "openvino"})
    found = _found(onnxruntime={"version": "1.20.1", "providers": ["CPUExecutionProvider"]},
                   openvino={"version": "2025.0.0"})
    assert check_probe("ssh://pi@pi5:22", found, device.runtimes, local=False) == {
        "target": "ssh://pi@pi5:22", "python": "3.10.12", "executable": "/usr/bin/python3", "machine": "aarch64",
        "numpy": "1.26.4", "runtimes": {"onnxruntime": "1.20.1", "openvino": "2025.0.0"},
        "providers": ["CPUExecutionProvider"]}


@pytest.mark.parametrize("modules, fix", [
    ({"numpy": {"error": "ModuleNotFoundError: No module named 'numpy'"}}, "on the device: pip install numpy"),
    ({"onnxruntime": {"error": "ModuleNotFoundError: No module named 'onnxruntime'"}},
     "cannot import onnxruntime (ModuleNotFoundError: No module named 'onnxruntime'); on the device: pip install "
     "onnxruntime"),
    ({"onnxruntime": {"version": "1.20.1", "providers": ["CPUExecutionProvider"]}},
     "execution provider CUDAExecutionProvider, but onnxruntime 1.20.1 has only CPUExecutionProvider; on the device: "
     "pip uninstall -y onnxruntime && pip install onnxruntime-gpu"),
])
def test_what_the_target_lacks_is_one_line_naming_the_fix(modules: dict, fix: str) -> None:
    device = _device(Access(), {"runtime": "onnxruntime", "providers": ["CUDAExecutionProvider"]})
    with pytest.raises(UserError) as info:
        check_probe("ssh://pi@pi5:22", _found(**modules), device.runtimes, local=False)
    assert fix in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith("ssh://pi@pi5:22: ")


#: ``adb devices`` as adb prints it: a header, then ``SERIAL<TAB>STATE`` per device (adb's own documentation,
#: developer.android.com/tools/adb#devicestatus: states device, offline, no device; unauthorized before the prompt)
ADB_DEVICES = ("* daemon not running; starting now at tcp:5037\n* daemon started successfully\n"
               "List of devices attached\nemulator-5554\tdevice\nR58M12345AB\tunauthorized\n0123456789\toffline\n\n")


@pytest.mark.parametrize("serial, expected", [
    ("emulator-5554", ("emulator-5554", "device")),
    ("R58M12345AB", "accept the USB debugging prompt"),
    ("0123456789", "is offline; reconnect it (adb reconnect)"),
    ("ZZZ", "adb devices does not list it (listed: emulator-5554, R58M12345AB, 0123456789)"),
    (None, "adb lists 3 devices (emulator-5554, R58M12345AB, 0123456789); set access.serial"),
])
def test_adb_device_state(serial: str | None, expected: tuple | str) -> None:
    if isinstance(expected, tuple):
        assert adb_state(ADB_DEVICES, serial) == expected
        return
    with pytest.raises(UserError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        adb_state(ADB_DEVICES, serial)


def test_adb_with_no_device_attached_says_how_to_connect_one() -> None:
    with pytest.raises(UserError, match=r"does not list any device \(listed: none\); connect it"):
        adb_state("List of devices attached\n\n", None)


ADB_STANDIN = """#!/bin/sh
# adb stand-in: `-s SERIAL devices` prints the listing in $ADB_DEVICES, `-s SERIAL shell CMD` runs CMD here
[ "$1" = "-s" ] && shift 2
case "$1" in
  devices) printf '%b' "$ADB_DEVICES" ;;
  shell) shift; exec sh -c "$*" ;;
  *) echo "adb stand-in: unsupported $1" >&2; exit 1 ;;
esac
"""


def test_adb_target_preflight_through_a_standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "adb").write_text(ADB_STANDIN)
    (bin_dir / "adb").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("ADB_DEVICES", ADB_DEVICES.replace("\t", "\\t").replace("\n", "\\n"))
    perf = tmp_path / "onnxruntime_perf_test"
    access = Access(kind="adb", serial="emulator-5554", perf_binary=str(perf))
    device = _device(access, {"runtime": "onnxruntime", "providers": ["CPUExecutionProvider"]})
    with pytest.raises(UserError, match=f"{perf} .access.perf_binary. is not on the device; push it with adb push"):
        preflight(device)
    perf.write_text("")
    record = preflight(device)
    assert record["target"] == "adb://emulator-5554" and record["adb"] == {"serial": "emulator-5554",
                                                                         "state": "device"}
    with pytest.raises(UserError, match="device R58M12345AB is unauthorized"):
        preflight(_device(access.model_copy(update={"serial": "R58M12345AB"})))


# -- this machine -----------------------------------------------------------------------------------------------------

def test_local_cuda_provider_with_cpu_only_onnxruntime_is_exit_2_at_validate(tmp_path: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider (onnxruntime-gpu): nothing to refuse")
    profile = tmp_path / "cuda-ort.yaml"
    profile.write_text("name: cuda-ort\nruntimes:\n  - {runtime: onnxruntime, providers: [CUDAExecutionProvider]}\n")
    done = run_cli("validate", str(QUICKSTART), "--device", str(profile), timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: this machine: the profile lists execution provider CUDAExecutionProvider, but onnxruntime "
        f"{onnxruntime.__version__} has only {', '.join(onnxruntime.get_available_providers())}; in this environment: "
        f"pip uninstall -y onnxruntime && pip install onnxruntime-gpu"]


def test_local_tensorrt_profile_without_tensorrt_names_the_install() -> None:
    from edgekd.runtimes.tensorrt.runner import tensorrt_problem

    if tensorrt_problem() is None:
        pytest.skip("TensorRT and a CUDA device are here: nothing to refuse")
    with pytest.raises(UserError, match="pip install") as info:
        preflight(_device(Access(), {"runtime": "tensorrt"}))
    assert "tensorrt" in str(info.value) and "\n" not in str(info.value)


def test_local_cuda_index_beyond_the_devices_is_refused() -> None:
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    seen = f"sees {count} CUDA device.s.; set the profile's device to one of cuda:0" if count else "sees no CUDA device"
    with pytest.raises(UserError, match=f"device cuda:{count + 1}, but torch .*{seen}"):
        preflight(_device(Access(), {"runtime": "torch", "device": f"cuda:{count + 1}"}))


# -- through a real sshd -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def python_without_onnxruntime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real Python of this version with numpy and neither onnxruntime nor openvino."""
    root = tmp_path_factory.mktemp("devpy")
    venv.create(root / "venv", with_pip=False)
    only = root / "only"
    only.mkdir()
    source = Path(numpy.__file__).parent
    for name in (source.name, f"{source.name}.libs"):
        if (source.parent / name).exists():
            (only / name).symlink_to(source.parent / name)
    python = root / "venv" / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (Path(site) / "only-numpy.pth").write_text(f"{only}\n")
    check = subprocess.run([str(python), "-c", "import numpy, importlib.util as u; "
                            "assert u.find_spec('onnxruntime') is None"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    return python


def _profile(path: Path, access: Access) -> Path:
    path.write_text(f"""name: preflight-ssh
threads: 1
access: {{kind: ssh, host: {access.host}, user: {access.user}, port: {access.port},
          identity_file: {access.identity_file}, known_hosts: {access.known_hosts}, workdir: {access.workdir},
          python: {access.python}}}
runtimes: [{{runtime: onnxruntime, precisions: [fp32]}}]
""")
    return path


def _run_fails_fast(tmp_path: Path, access: Access, *expected: str) -> str:
    out = tmp_path / "run"
    start = time.monotonic()
    done = run_cli("run", str(QUICKSTART), "--device", str(_profile(tmp_path / "p.yaml", access)), "--smoke",
                   "--out", str(out), timeout=120)
    elapsed = time.monotonic() - start
    assert done.returncode == 2, done.stderr
    assert elapsed < COMMAND, elapsed
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == lines[-1:] and "Traceback" not in done.stderr, done.stderr  # one line, the last
    assert all(e in errors[0] for e in expected), errors[0]
    # no stage ran: no train-teacher folder, no stage record, no manifest (the run's lock file may be there)
    assert not (out / "train-teacher").exists() and not list(out.rglob("stage.json"))
    assert not (out / "manifest.json").exists()
    return errors[0]


@needs_sshd
def test_good_target_is_probed_in_one_call_and_recorded(sshd) -> None:  # noqa: F811
    device = _device(sshd["access"], {"runtime": "onnxruntime"}, {"runtime": "openvino"})
    record = preflight(device)
    assert record["target"] == f"ssh://{sshd['access'].user}@127.0.0.1:{sshd['access'].port}"
    assert record["executable"] == sys.executable and record["numpy"] == importlib.metadata.version("numpy")
    assert record["runtimes"] == {"onnxruntime": importlib.metadata.version("onnxruntime"),
                                  "openvino": __import__("openvino").__version__}
    assert record["seconds"] < FAST
    assert not list(sshd["workdir"].glob("run-*"))  # nothing was copied to the device


def _broken(server: dict, tmp_path: Path, what: str) -> Access:
    """The sshd's access with one thing wrong: the host key on file, the port, or the device's Python."""
    access = server["access"]
    if what == "host key":
        _keygen(tmp_path / "other_host")
        known = tmp_path / "known_hosts"
        known.write_text(f"[127.0.0.1]:{access.port} {(tmp_path / 'other_host.pub').read_text()}")
        return access.model_copy(update={"known_hosts": known})
    if what == "port":
        return access.model_copy(update={"port": _free_port()})
    return access.model_copy(update={"python": str(tmp_path / "no-python")})


@needs_sshd
@pytest.mark.parametrize("what, message", [("host key", "ssh-keyscan"), ("port", "cannot reach the host"),
                                           ("python", "not found on the device")])
def test_each_failure_is_found_within_seconds(sshd, tmp_path: Path, what: str, message: str) -> None:  # noqa: F811
    start = time.monotonic()
    with pytest.raises(UserError, match=message):
        preflight(_device(_broken(sshd, tmp_path, what)))
    assert time.monotonic() - start < FAST


@needs_sshd
def test_wrong_host_key_ends_run_with_the_keyscan_fix(sshd, tmp_path: Path) -> None:  # noqa: F811
    access = sshd["access"]
    _keygen(tmp_path / "other_host")  # a key that is not the server's, filed under its name and port
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{access.port} {(tmp_path / 'other_host.pub').read_text()}")
    line = _run_fails_fast(tmp_path, access.model_copy(update={"known_hosts": known}),
                           "host key is not in access.known_hosts",
                           f"ssh-keyscan -p {access.port} 127.0.0.1 >> {known}",
                           f"ssh-keygen -R '[127.0.0.1]:{access.port}' -f {known}")
    assert "(Host key verification failed.)" in line  # ssh's own last line, kept


@needs_sshd
def test_the_named_keyscan_fix_makes_the_preflight_pass(sshd, tmp_path: Path) -> None:  # noqa: F811
    access = sshd["access"]
    known = tmp_path / "known_hosts"
    known.write_text("")
    device = _device(access.model_copy(update={"known_hosts": known}))
    with pytest.raises(UserError) as info:
        preflight(device)
    command = str(info.value).split("add the host key with ")[1].split(" (")[0]
    assert command == f"ssh-keyscan -p {access.port} 127.0.0.1 >> {known}"
    keys, _ = command.split(" >> ")
    scanned = subprocess.run(keys.split(), capture_output=True, text=True, timeout=30, check=True).stdout
    with known.open("a") as file:
        file.write(scanned)
    assert preflight(device)["runtimes"] == {"onnxruntime": importlib.metadata.version("onnxruntime")}


@needs_sshd
def test_closed_port_ends_run_saying_the_host_cannot_be_reached(sshd, tmp_path: Path) -> None:  # noqa: F811
    port = _free_port()
    _run_fails_fast(tmp_path, sshd["access"].model_copy(update={"port": port}), "cannot reach the host",
                    "Connection refused", f"127.0.0.1:{port}")


@needs_sshd
def test_device_python_without_the_runtime_ends_run_naming_the_install(sshd, tmp_path: Path,  # noqa: F811
                                                                         python_without_onnxruntime: Path) -> None:
    _run_fails_fast(tmp_path, sshd["access"].model_copy(update={"python": str(python_without_onnxruntime)}),
                    "the profile lists runtime 'onnxruntime'",
                    f"{python_without_onnxruntime} cannot import onnxruntime",
                    "No module named 'onnxruntime'", "on the device: pip install onnxruntime")


@needs_sshd
def test_missing_device_python_is_named(sshd) -> None:  # noqa: F811
    device = _device(sshd["access"].model_copy(update={"python": "/nonexistent/python3"}))
    with pytest.raises(UserError, match="/nonexistent/python3 not found on the device .*set access.python"):
        preflight(device)
