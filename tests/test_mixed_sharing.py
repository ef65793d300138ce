"""The quantize stage's mixed-precision engines share one sensitivity ranking (measured once per stage, counted);
``quantize.mixed`` enters the stage's cache key only when a mixed-precision engine is asked; an ``ort-mixed`` that
keeps no node in float is not kept beside ``ort``, the same graph."""

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
from edgekd.pipeline.artifacts import Artifact
from edgekd.quantize.jobs import Int8Build, Int8Job
from edgekd.quantize.mixed import mixed_build
from edgekd.stages.quantize import Quantize, fold_twin
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


def artifact(name: str, **info: Any) -> Artifact:
    return Artifact(name=name, path=f"quantize/{name}/model.onnx", format="onnx", precision="int8",
                    runtime="onnxruntime", role="student", input={}, info=info)


@pytest.mark.parametrize(("k", "folded"), [(0, True), (1, False)])
def test_ort_mixed_with_no_float_node_folds_into_ort(k: int, folded: bool) -> None:
    ort = artifact("student-onnx-int8-ort", method="ort")
    mixed = {"k": k, "excluded": ["/c/Conv"][:k], "sensitivity": [{"node": "/c/Conv"}]}
    candidate = artifact("student-onnx-int8-ort-mixed", method="ort-mixed", mixed=mixed)
    entry = Int8Build(candidate.name, "onnx", "onnxruntime", lambda out: out, None, twin=ort.name)
    why = fold_twin(entry, candidate, [ort])
    assert (why is not None) is folded
    if folded:
        assert why == ("kept no node in float (k = 0): the same graph as student-onnx-int8-ort, not built twice; "
                       "its ranking is student-onnx-int8-ort's info.mixed")
        assert ort.info["mixed"] == {**mixed, "engine": "ort-mixed"}
    else:
        assert "mixed" not in ort.info
    assert fold_twin(entry._replace(twin=None), candidate, [ort]) is None
    assert fold_twin(entry, candidate, []) is None
