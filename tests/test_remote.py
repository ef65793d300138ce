"""Benchmarks through a real sshd on 127.0.0.1, and the failures a user meets: unreachable host, refused key,
unknown host key, a runner crash. Each ends within its timeout with one line and exit 2 or 3.

The fixture starts Debian's ``/usr/sbin/sshd`` (package ``openssh-server``) in the foreground with its own config in a
temporary folder: a random free port on 127.0.0.1, a host key generated there, a throw-away client key as the only
authorized key, no passwords, no PAM. The "device" python is this test's own interpreter (numpy, onnxruntime and
openvino installed).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from edgekd.bench.measure import bench_artifact
from edgekd.bench.remote import SshTarget
from edgekd.config import BenchConfig
from edgekd.config.device import Access
from edgekd.errors import RuntimeFailure, UserError
from edgekd.export import export_onnx
from edgekd.models import create
from tests.conftest import ROOT, run_cli

SSHD = Path("/usr/sbin/sshd")
pytestmark = pytest.mark.skipif(not SSHD.exists() or shutil.which("ssh") is None,
                                reason="needs Debian's openssh-server (/usr/sbin/sshd) and the ssh client")
CFG = BenchConfig(warmup=2, runs=10, max_seconds=5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("sshd")
    host_key = _keygen(root / "host_ed25519")
    client_key = _keygen(root / "client_ed25519")
    (root / "authorized_keys").write_text((root / "client_ed25519.pub").read_text())
    port = _free_port()
    (root / "known_hosts").write_text(f"[127.0.0.1]:{port} {(root / 'host_ed25519.pub').read_text()}")
    config = root / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}", f"AuthorizedKeysFile {root}/authorized_keys",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes", "UsePAM no",
        "StrictModes no", "Subsystem sftp /usr/lib/openssh/sftp-server", f"PidFile {root}/sshd.pid",
        "PermitRootLogin prohibit-password", "LogLevel ERROR", ""]))
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    server = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if server.poll() is not None:
            pytest.fail(f"sshd did not start: {server.stderr.read() if server.stderr else ''}")
        time.sleep(0.1)
    workdir = root / "device"
    access = Access(kind="ssh", host="127.0.0.1", user=os.environ.get("USER") or "root", port=port,
                    identity_file=client_key, known_hosts=root / "known_hosts", workdir=str(workdir),
                    python=sys.executable)
    yield {"root": root, "access": access, "workdir": workdir}
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(scope="module")
def onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = create("plain2", num_classes=3, in_channels=1).eval()
    return export_onnx(net, [0.25], [0.5], torch.rand(2, 1, 8, 8), tmp_path_factory.mktemp("m") / "model.onnx")


def test_real_benchmark_through_sshd_and_the_folder_is_cleaned(sshd, onnx: Path) -> None:
    metrics = bench_artifact(onnx, "onnxruntime", {"threads": 1}, CFG, SshTarget(sshd["access"]))
    assert metrics["target"] == f"ssh://{sshd['access'].user}@127.0.0.1:{sshd['access'].port}"
    assert metrics["latency_ms"]["runs"] >= 10 and metrics["latency_ms"]["p50"] > 0
    assert metrics["compute"]["providers"] == ["CPUExecutionProvider"]
    assert metrics["environment"]["cpu"]["flags"] and metrics["memory"]["peak_rss_mb"] > 0
    assert not list(sshd["workdir"].glob("run-*"))  # the per-run folder was removed


def _with(access: Access, **changes) -> Access:
    return access.model_copy(update=changes)


def _fails_fast(target: SshTarget, onnx: Path, error: type, match: str, limit: float = 30) -> None:
    start = time.monotonic()
    with pytest.raises(error, match=match) as info:
        bench_artifact(onnx, "onnxruntime", {"threads": 1}, CFG, target)
    assert time.monotonic() - start < limit
    assert "\n" not in str(info.value)


def test_unreachable_host_is_exit_2(sshd, onnx: Path) -> None:
    _fails_fast(SshTarget(_with(sshd["access"], port=_free_port()), connect_timeout=3), onnx, UserError,
                "cannot reach the host .*Connection refused")


def test_refused_key_is_exit_2(sshd, onnx: Path) -> None:
    other = _keygen(sshd["root"] / "other_ed25519")
    _fails_fast(SshTarget(_with(sshd["access"], identity_file=other)), onnx, UserError,
                "refused the key .*Permission denied")


def test_unknown_host_key_is_exit_2(sshd, onnx: Path) -> None:
    empty = sshd["root"] / "empty_known_hosts"
    empty.write_text("")
    _fails_fast(SshTarget(_with(sshd["access"], known_hosts=empty)), onnx, UserError,
                "host key is not in access.known_hosts")


def test_corrupt_artifact_on_the_device_is_exit_2(sshd, tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    _fails_fast(SshTarget(sshd["access"]), bad, UserError, "ssh://.*bad.onnx: ONNX Runtime cannot load this model")


def test_runner_crash_without_a_result_is_exit_3(sshd, onnx: Path) -> None:
    # a device python that dies at once (as a segfaulting runtime would): no result.json comes back
    _fails_fast(SshTarget(_with(sshd["access"], python="/bin/false")), onnx, RuntimeFailure,
                "device runner crashed on model.onnx without a result")
    assert not list(sshd["workdir"].glob("run-*"))


def test_cli_bench_over_ssh_gives_one_line_and_exit_2(sshd, onnx: Path, tmp_path: Path) -> None:
    access = sshd["access"]
    profile = tmp_path / "ssh-bad.yaml"
    profile.write_text(f"""name: ssh-bad
threads: 1
access: {{kind: ssh, host: 127.0.0.1, user: {access.user}, port: {access.port}, identity_file: {access.identity_file},
          known_hosts: {tmp_path / 'none'}, python: {sys.executable}}}
runtimes: [{{runtime: onnxruntime}}]
""")
    (tmp_path / "none").write_text("")
    done = run_cli("bench", str(onnx), "--device", str(profile), "--runs", "5", timeout=120)
    assert done.returncode == 2, done.stderr
    assert "host key is not in access.known_hosts" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_quickstart_benchmarks_every_artifact_through_sshd(sshd, tmp_path: Path) -> None:
    access = sshd["access"]
    profile = tmp_path / "local-ssh.yaml"
    profile.write_text(f"""name: local-ssh
description: this machine reached over ssh (test)
threads: 2
access: {{kind: ssh, host: 127.0.0.1, user: {access.user}, port: {access.port}, identity_file: {access.identity_file},
          known_hosts: {access.known_hosts}, workdir: {access.workdir}, python: {sys.executable}}}
runtimes:
  - {{runtime: onnxruntime, precisions: [fp32]}}
  - {{runtime: openvino, precisions: [fp32]}}
budgets: {{max_size_mb: 20}}
""")
    out = tmp_path / "run"
    done = run_cli("run", str(ROOT / "pipelines" / "quickstart.yaml"), "--device", str(profile), "--smoke",
                   "--out", str(out), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    measured = {a["name"]: a["metrics"] for a in manifest["artifacts"] if a["runtime"] in {"onnxruntime", "openvino"}}
    assert measured and all(m["target"].startswith("ssh://") and m["latency_ms"]["p50"] > 0 for m in measured.values())
    torch_artifacts = [a for a in manifest["artifacts"] if a["runtime"] == "torch"]
    assert torch_artifacts and all("latency_ms" not in a["metrics"] for a in torch_artifacts)  # not offered there
    import onnxruntime
    import openvino

    checked = manifest["preflight"]  # what the pre-flight found on the device before the first stage
    assert checked["target"] == next(iter(measured.values()))["target"] and checked["executable"] == sys.executable
    assert checked["runtimes"] == {"onnxruntime": onnxruntime.__version__, "openvino": openvino.__version__}
