"""The LayerMerge latency table: measured on the runtime, cached by shape, resumable entry by entry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edgekd.errors import UserError
from edgekd.models import create
from edgekd.prune import latency as latency_mod
from edgekd.prune.graph import analyse
from edgekd.prune.latency import LatencySettings, LatencyTable, build_latency_table, signature, signature_key
from edgekd.prune.segments import candidate_options

X = torch.rand(1, 1, 8, 8)
FAST = dict(device="test-cpu", options={"threads": 1}, warmup=1, runs=3, max_seconds=0.5)


def _chain(name: str = "resnet8"):
    return analyse(create(name, num_classes=10, in_channels=1), X)


def test_table_is_measured_once_and_reused_by_a_deeper_network(tmp_path: Path, monkeypatch) -> None:
    calls: list[str] = []
    real = latency_mod.measure_module

    def counting(net, example, settings):
        calls.append(tuple(example.shape))
        return real(net, example, settings)

    monkeypatch.setattr(latency_mod, "measure_module", counting)
    settings = LatencySettings(**FAST)
    chain = _chain()
    options = candidate_options(chain)
    table = build_latency_table(chain, options, settings, tmp_path, batch_size=2)
    unique = {signature_key(signature(chain, o, 2)) for o in options}
    assert set(table) == {o.key for o in options} and len(calls) == len(unique)
    assert all(v > 0 for v in table.values())
    (path,) = tmp_path.glob("latency-*.json")
    stored = json.loads(path.read_text())
    assert set(stored["entries"]) == unique and stored["key"]["runtime"] == "onnxruntime"
    assert stored["key"]["libraries"]["onnxruntime"]
    calls.clear()
    deeper = _chain("resnet14")
    deeper_options = candidate_options(deeper, max_kernel=5)
    build_latency_table(deeper, deeper_options, settings, tmp_path, batch_size=2)
    new = {signature_key(signature(deeper, o, 2)) for o in deeper_options} - unique
    assert len(calls) == len(new) < len(deeper_options)  # same shapes: reused


def test_killed_run_resumes_where_it_stopped(tmp_path: Path, monkeypatch) -> None:
    settings = LatencySettings(**FAST)
    chain = _chain()
    options = candidate_options(chain)
    done = []

    def dies_after_three(net, example, settings):
        if len(done) == 3:
            raise KeyboardInterrupt  # stands for kill -9: nothing after the last atomic write survives
        done.append(1)
        return {"p50": 0.5, "mean": 0.6, "runs": 1}

    monkeypatch.setattr(latency_mod, "measure_module", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        build_latency_table(chain, options, settings, tmp_path)
    assert len(LatencyTable(tmp_path, settings).entries) == 3
    resumed = []
    monkeypatch.setattr(latency_mod, "measure_module",
                        lambda *a: resumed.append(1) or {"p50": 0.25, "mean": 0.3, "runs": 1})
    table = build_latency_table(chain, options, settings, tmp_path)
    unique = {signature_key(signature(chain, o, 1)) for o in options}
    assert len(resumed) == len(unique) - 3 and set(table.values()) == {0.5, 0.25}


def test_cache_is_keyed_by_runtime_precision_and_device(tmp_path: Path) -> None:
    a = LatencyTable(tmp_path, LatencySettings(**FAST)).path
    b = LatencyTable(tmp_path, LatencySettings(**{**FAST, "device": "other"})).path
    c = LatencyTable(tmp_path, LatencySettings(**{**FAST, "runtime": "openvino"})).path
    d = LatencyTable(tmp_path, LatencySettings(**{**FAST, "runtime": "openvino", "precision": "bf16"})).path
    assert len({a, b, c, d}) == 4


def test_openvino_precision_is_always_explicit() -> None:
    assert LatencySettings(device="d", runtime="openvino").runner_options()["inference_precision"] == "f32"
    assert LatencySettings(device="d", runtime="openvino", precision="bf16").runner_options()[
        "inference_precision"] == "bf16"
    with pytest.raises(UserError, match="contradicts"):
        LatencySettings(device="d", runtime="openvino", options={"inference_precision": "bf16"}).runner_options()
    with pytest.raises(UserError, match="fp32"):
        LatencySettings(device="d", runtime="onnxruntime", precision="fp16").runner_options()
    with pytest.raises(UserError, match="not supported"):
        LatencySettings(device="d", runtime="tensorrt").runner_options()


def test_openvino_entry_runs_in_f32(tmp_path: Path, monkeypatch) -> None:
    import edgekd.runtime

    seen = []
    real = edgekd.runtime.open_runner

    def recording(runtime, path, **options):
        runner = real(runtime, path, **options)
        seen.append(runner.describe()["inference_precision"])
        return runner

    monkeypatch.setattr(edgekd.runtime, "open_runner", recording)
    chain = _chain()
    option = candidate_options(chain)[0]
    settings = LatencySettings(**{**FAST, "runtime": "openvino"})
    table = build_latency_table(chain, [option], settings, tmp_path)
    assert table[option.key] > 0 and seen == ["f32"]  # never OpenVINO's bf16 default on this CPU
