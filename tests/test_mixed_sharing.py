"""The quantize stage's mixed-precision engines share one sensitivity ranking (measured once per stage, counted),
and ``quantize.mixed`` enters the stage's cache key only when a mixed-precision engine is asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import edgekd.quantize.mixed as mixed_module
from edgekd.config import load_device
from edgekd.config.loader import load_recipe
from edgekd.config.quantize import QuantizeConfig
from edgekd.export import export_onnx
from edgekd.quantize.jobs import Int8Job
from edgekd.quantize.mixed import mixed_build
from edgekd.stages.quantize import Quantize
from tests.conftest import ROOT
from tests.test_sensitivity import cnn

SHAPE = (1, 8, 8)


def job(fp32: Path, shared: dict[Any, Any], runtime: str) -> Int8Job:
    rng = np.random.default_rng(0)
    cfg = QuantizeConfig(engines=["ort-mixed", "nncf-mixed"],
                         mixed={"float_nodes": 1, "ranking_samples": 16, "sqnr_samples": 8})
    val = (rng.random((16, *SHAPE), dtype=np.float32), rng.integers(0, 4, 16))
    return Int8Job(runtime=runtime, device="CPU", stem="student", cfg=cfg,
                   calibration=rng.random((16, *SHAPE), dtype=np.float32), nncf_target="CPU",
                   symmetric_activations=False, unmet=None, fp32=lambda fmt: fp32, val=lambda: val,
                   max_drop=lambda path: 0.01, qat_model=lambda: None, mean=[0.4], std=[0.3], example=None,
                   shared=shared)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    measure = mixed_module.ort_sensitivity

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return measure(*args, **kwargs)

    monkeypatch.setattr(mixed_module, "ort_sensitivity", counting)
    return calls


def test_the_ranking_is_measured_once_for_both_engines(counted: list[int], tmp_path: Path) -> None:
    torch.manual_seed(0)
    fp32 = export_onnx(cnn(8).eval(), [0.4], [0.3], torch.rand(1, *SHAPE), tmp_path / "fp32.onnx")
    shared: dict[Any, Any] = {}
    builds = [mixed_build(job(fp32, shared, runtime), "onnx", runtime, "model.onnx", "ort-mixed")
              for runtime in ("onnxruntime", "openvino")]
    for i, build in enumerate(builds):
        (tmp_path / str(i)).mkdir()
        build.build(tmp_path / str(i))
    assert len(counted) == 1
    assert builds[0].info and builds[1].info
    assert builds[0].info["mixed"]["sensitivity"] == builds[1].info["mixed"]["sensitivity"]
    alone = mixed_build(job(fp32, {}, "onnxruntime"), "onnx", "onnxruntime", "model.onnx", "ort-mixed")
    (tmp_path / "alone").mkdir()
    alone.build(tmp_path / "alone")
    assert len(counted) == 2  # another stage (another shared dict) measures its own


@pytest.mark.parametrize(("engines", "differs"), [("[ort]", False), ("[ort, nncf]", False), ("[ort, ort-mixed]", True),
                                                  ("[nncf-mixed]", True)])
def test_mixed_settings_enter_the_cache_key_only_with_a_mixed_engine(engines: str, differs: bool) -> None:
    device = load_device("x86-cpu")
    keys = [Quantize().config(load_recipe(ROOT / "pipelines" / "quickstart.yaml",
                                          [f"quantize.engines={engines}", f"quantize.mixed.max_drop={drop}"]),
                              device, smoke=False)
            for drop in (0.01, 0.05)]
    assert (keys[0] != keys[1]) is differs
    assert ("mixed" in keys[0]["quantize"]) is differs
