"""The run directory's integrity: per-file digests that `sha256sum -c` verifies, and one writer per directory."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgekd.errors import UserError
from edgekd.pipeline import lock
from edgekd.pipeline.artifacts import Artifact
from edgekd.pipeline.hashing import output_change
from tests.conftest import ROOT, run_cli, sha256sum_check

QUICKSTART = str(ROOT / "pipelines" / "quickstart.yaml")
RUN = ["run", QUICKSTART, "--device", "x86-cpu", "--smoke"]


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture()
def ir(tmp_path: Path) -> tuple[Path, Artifact]:
    """A stand-in OpenVINO IR (an .xml and its .bin) recorded as an artifact."""
    run_dir = tmp_path / "run"
    (run_dir / "export").mkdir(parents=True)
    xml = run_dir / "export" / "model.xml"
    xml.write_text("<net/>\n")
    xml.with_suffix(".bin").write_bytes(bytes(range(256)) * 4)
    art = Artifact.from_file(run_dir, xml, name="m", format="openvino", precision="fp32", runtime="openvino",
                             role="student", input={})
    return run_dir, art


def test_an_ir_lists_both_files_with_their_plain_digests(ir: tuple[Path, Artifact]) -> None:
    run_dir, art = ir
    xml, bin_ = run_dir / "export" / "model.xml", run_dir / "export" / "model.bin"
    expect = [{"path": "export/model.xml", "bytes": 7, "sha256": hashlib.sha256(b"<net/>\n").hexdigest()},
              {"path": "export/model.bin", "bytes": 1024, "sha256": hashlib.sha256(bin_.read_bytes()).hexdigest()}]
    assert art.files == expect
    assert art.sha256 == expect[0]["sha256"] == hashlib.sha256(xml.read_bytes()).hexdigest()
    assert art.bytes == 1031
    combined = hashlib.sha256(b"model.xml" + expect[0]["sha256"].encode() + b"model.bin"
                              + expect[1]["sha256"].encode()).hexdigest()
    assert art.combined_sha256 == combined
    assert output_change(run_dir, art.to_dict()) is None


def test_sha256sum_verifies_the_files_and_catches_one_changed_byte(ir: tuple[Path, Artifact], tmp_path: Path) -> None:
    run_dir, art = ir
    manifest = {"artifacts": [art.to_dict()]}
    ok = sha256sum_check(run_dir, manifest, tmp_path / "SHA256SUMS")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "export/model.bin: OK" in ok.stdout
    flip_last_byte(run_dir / "export" / "model.bin")
    bad = sha256sum_check(run_dir, manifest, tmp_path / "SHA256SUMS")
    assert bad.returncode == 1 and "export/model.bin: FAILED" in bad.stdout
    assert output_change(run_dir, art.to_dict()) == "output modified: export/model.bin"
    (run_dir / "export" / "model.bin").unlink()
    assert output_change(run_dir, art.to_dict()) == "output missing: export/model.bin"


def test_a_record_from_before_per_file_digests_still_loads_and_is_checked(ir: tuple[Path, Artifact]) -> None:
    run_dir, art = ir
    old = {k: v for k, v in art.to_dict().items() if k not in ("files", "combined_sha256")}
    old["sha256"] = art.combined_sha256  # what the manifest used to store for an IR
    loaded = Artifact.from_dict(old)
    assert loaded.files == [] and loaded.combined_sha256 == ""
    assert output_change(run_dir, old) is None
    flip_last_byte(run_dir / "export" / "model.bin")
    assert output_change(run_dir, old) == "output modified: export/model.xml"  # one digest: names the artifact


HOLDER = """
import sys, time
from pathlib import Path
from edgekd.pipeline.lock import acquire
acquire(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(120)
"""


def test_a_held_run_directory_is_refused_naming_the_holder_and_freed_by_kill_9(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=rf"pid {holder.pid} on .+, started 20\d\d-") as refused:
            lock.acquire(run_dir)
        assert "\n" not in str(refused.value)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    fd = lock.acquire(run_dir)  # the kernel dropped the dead holder's lock
    try:
        assert json.loads((run_dir / lock.LOCK_FILE).read_text())["pid"] == os.getpid()
    finally:
        lock.release(fd)
    lock.release(lock.acquire(run_dir))  # and a released lock can be taken again


@pytest.mark.slow
def test_a_second_concurrent_run_exits_2_and_the_first_ones_files_verify(tmp_path: Path) -> None:
    """Two runs on one folder, started apart; then one byte of an IR changes under the run."""
    run_dir = tmp_path / "run"
    env = {**os.environ, "COLUMNS": "200"}
    log = tmp_path / "first.log"
    with open(log, "w") as sink:
        first = subprocess.Popen([sys.executable, "-m", "edgekd.cli", *RUN, "--out", str(run_dir)], cwd=ROOT,
                                 env=env, stdout=sink, stderr=subprocess.STDOUT)
    lock_file = run_dir / lock.LOCK_FILE
    deadline = time.time() + 120
    while time.time() < deadline and not (lock_file.exists() and lock_file.read_text()):
        time.sleep(0.1)
    second = run_cli(*RUN, "--out", str(run_dir))
    assert first.poll() is None, "the first run ended before the second started: nothing was concurrent"
    assert second.returncode == 2, second.stderr
    refusal = [line for line in second.stderr.splitlines() if "error:" in line]
    assert len(refusal) == 1 and f"pid {first.pid} " in refusal[0] and "started 20" in refusal[0], second.stderr
    assert "Traceback" not in second.stderr
    first.wait(timeout=600)
    assert first.returncode == 0, log.read_text()[-3000:]

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert {s["status"] for s in manifest["stages"]} <= {"done", "skipped"}
    ir = next(a for a in manifest["artifacts"] if a["format"] == "openvino")
    assert [Path(f["path"]).suffix for f in ir["files"]] == [".xml", ".bin"]
    for art in manifest["artifacts"]:
        assert art["sha256"] == hashlib.sha256((run_dir / art["path"]).read_bytes()).hexdigest()
        assert art["bytes"] == sum(f["bytes"] for f in art["files"])
    checked = sha256sum_check(run_dir, manifest, tmp_path / "SHA256SUMS")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    bin_path = ir["files"][1]["path"]
    flip_last_byte(run_dir / bin_path)
    assert sha256sum_check(run_dir, manifest, tmp_path / "SHA256SUMS").returncode == 1
    rerun = run_cli(*RUN, "--out", str(run_dir))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    export = next(s for s in json.loads((run_dir / "manifest.json").read_text())["stages"] if s["name"] == "export")
    assert export["status"] == "done" and export["reason"].startswith(f"output modified: {bin_path}")
    after = json.loads((run_dir / "manifest.json").read_text())
    assert sha256sum_check(run_dir, after, tmp_path / "SHA256SUMS").returncode == 0
