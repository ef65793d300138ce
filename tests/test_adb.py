"""The adb path, through STAND-INS: an ``adb`` script on PATH that runs ``push`` and ``shell`` locally (no phone is
attached to CI), and an ``onnxruntime_perf_test`` stand-in that really runs the pushed model in ONNX Runtime and prints
its figures in onnxruntime_perf_test's own report format (as in tests/fixtures/bench/onnxruntime_perf_test_*.txt).
What is tested is edgekd's side: the commands it sends, the push, the parsing, the clean-up and the failures."""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from edgekd.bench.adb import AdbTarget
from edgekd.config import BenchConfig
from edgekd.config.device import Access
from edgekd.errors import RuntimeFailure
from edgekd.export import export_onnx
from edgekd.models import create

ADB = """\
#!{python}
# adb stand-in: `[-s SERIAL] push SRC DST` copies, `[-s SERIAL] shell CMD` runs CMD locally; every call is logged
import json, os, shutil, subprocess, sys
args = sys.argv[1:]
serial = None
if args[:1] == ["-s"]:
    serial, args = args[1], args[2:]
with open(os.environ["ADB_STANDIN_LOG"], "a") as log:
    log.write(json.dumps({{"serial": serial, "args": args}}) + "\\n")
if args[0] == "push":
    os.makedirs(os.path.dirname(args[2]), exist_ok=True)
    shutil.copyfile(args[1], args[2])
    print(args[1] + ": 1 file pushed")
elif args[0] == "shell":
    done = subprocess.run(["bash", "-c", " ".join(args[1:])])
    sys.exit(done.returncode)
else:
    sys.exit("adb stand-in: unsupported " + args[0])
"""

PERF_TEST = """\
#!{python}
# onnxruntime_perf_test stand-in: runs the model in ONNX Runtime, prints the tool's report lines
import json, os, sys, time
import numpy as np, onnxruntime as ort
args = sys.argv[1:]
model = args[-1]
runs = int(args[args.index("-r") + 1])
t0 = time.perf_counter()
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
created = time.perf_counter() - t0
shape = [1 if not isinstance(d, int) else d for d in session.get_inputs()[0].shape]
x = np.random.rand(*shape).astype(np.float32)
times = []
for _ in range(runs):
    t = time.perf_counter()
    session.run(None, {{session.get_inputs()[0].name: x}})
    times.append(time.perf_counter() - t)
times = np.array(times)
print("Session creation time cost:%g s" % created)
print("Total inference time cost:%g s" % times.sum())
print("Total inference requests:%d" % runs)
print("Average inference time cost:%g ms" % (times.mean() * 1e3))
for name, value in [("Min", times.min()), ("Max", times.max())] + [
        ("P%d" % q, np.percentile(times, q)) for q in (50, 90, 95, 99)]:
    print("%s Latency is %g sec" % (name, value))
with open(os.environ["ADB_STANDIN_LOG"] + ".perf.json", "w") as out:
    json.dump({{"p50_ms": float(np.percentile(times, 50) * 1e3), "args": args}}, out)
"""


def _script(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.fixture()
def standins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(bin_dir / "adb", ADB)
    (tmp_path / "device").mkdir()
    perf = _script(tmp_path / "device" / "onnxruntime_perf_test", PERF_TEST)
    log = tmp_path / "adb.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ADB_STANDIN_LOG", str(log))
    torch.manual_seed(0)
    onnx = export_onnx(create("plain2", num_classes=3, in_channels=1).eval(), [0.25], [0.5], torch.rand(2, 1, 8, 8),
                       tmp_path / "model.onnx")
    access = Access(kind="adb", serial="emulator-5554", workdir=str(tmp_path / "device" / "work"),
                    perf_binary=str(perf))
    return {"log": log, "onnx": onnx, "access": access, "workdir": tmp_path / "device" / "work"}


def _calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_model_pushed_perf_binary_run_and_parsed(standins) -> None:
    metrics = AdbTarget(standins["access"]).bench(standins["onnx"], "onnxruntime",
                                                  {"providers": ["CPUExecutionProvider"], "threads": 2},
                                                  BenchConfig(runs=30))
    printed = json.loads(Path(str(standins["log"]) + ".perf.json").read_text())
    assert metrics["latency_ms"]["p50"] == pytest.approx(printed["p50_ms"], rel=1e-4)  # %g keeps 6 digits
    assert metrics["latency_ms"]["runs"] == 30 and metrics["target"] == "adb://emulator-5554"
    assert printed["args"][:9] == ["-e", "cpu", "-m", "times", "-r", "30", "-s", "-I", "-x"]
    calls = _calls(standins["log"])
    assert all(c["serial"] == "emulator-5554" for c in calls)
    assert [c["args"][0] for c in calls][:3] == ["shell", "push", "shell"]
    assert calls[1]["args"][1] == str(standins["onnx"])  # the model itself is pushed
    assert not list(standins["workdir"].glob("run-*"))  # and the run folder removed afterwards
    assert metrics["native"]["session_creation_ms"] > 0


def test_failing_perf_binary_is_exit_3(standins, tmp_path: Path) -> None:
    broken = _script(tmp_path / "broken_perf_test", "#!/bin/sh\necho 'Failed to load model' >&2\nexit 1\n")
    access = standins["access"].model_copy(update={"perf_binary": str(broken)})
    with pytest.raises(RuntimeFailure, match="broken_perf_test failed on model.onnx .*Failed to load model"):
        AdbTarget(access).bench(standins["onnx"], "onnxruntime", {}, BenchConfig(runs=5))
    assert not list(standins["workdir"].glob("run-*"))
