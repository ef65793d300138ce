"""LayerMerge importance: exp(Δacc), brief fine-tune or BN-recalibration proxy, sharded and resumable."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from edgekd.config import ExecutionConfig
from edgekd.data import load_dataset
from edgekd.executor import Executor
from edgekd.models import create
from edgekd.prune import importance as imp
from edgekd.prune.graph import analyse
from edgekd.prune.importance import (
    ImportanceSettings,
    ImportanceStore,
    importance_value,
    load_importance,
    measure_importance,
)
from edgekd.prune.segments import candidate_options


@pytest.fixture(scope="module")
def setup():
    data = load_dataset("digits", seed=0, val_fraction=0.2)
    torch.manual_seed(0)
    net = create("resnet8", num_classes=10, in_channels=1, width=0.5)
    chain = analyse(net, data.train.x[:1])
    options = [o for o in candidate_options(chain, max_kernel=5) if o.segment.end <= 3]
    return data, chain, [(o.key, o.segment) for o in options][:4]


def test_importance_is_exp_of_the_accuracy_change() -> None:
    # the paper: exp(Δacc% / 100); accuracies here are in [0, 1]
    assert importance_value(0.90, 0.95) == pytest.approx(math.exp((90.0 - 95.0) / 100))
    assert importance_value(0.5, 0.5) == 1.0


@pytest.mark.parametrize("mode", ["proxy", "finetune"])
def test_shards_cover_every_entry_once_and_resume(setup, tmp_path: Path, mode: str, monkeypatch) -> None:
    data, chain, changes = setup
    settings = ImportanceSettings(mode=mode, steps=2, batch_size=16)
    store = ImportanceStore(tmp_path, settings)
    shards = [measure_importance(chain, changes, data, settings, store, rank=r, world_size=2) for r in range(2)]
    assert not set(shards[0]) & set(shards[1])
    assert set(shards[0]) | set(shards[1]) == {k for k, _ in changes}
    merged = load_importance(store, [k for k, _ in changes])
    base = store.get(imp.BASE)["accuracy"]
    for key, _ in changes:
        record = store.get(key)
        assert merged[key] == pytest.approx(math.exp(record["accuracy"] - base))
    # a second run (e.g. after kill -9) recomputes nothing
    monkeypatch.setattr(imp, "plan_accuracy", lambda *a, **k: pytest.fail("recomputed a stored entry"))
    assert measure_importance(chain, changes, data, settings, store) == merged


def test_fine_tune_changes_the_weights_and_proxy_only_bn_statistics(setup) -> None:
    data, chain, changes = setup
    from edgekd.prune.apply import build_pruned
    from edgekd.prune.segments import Plan

    plan = Plan.single(chain, changes[-1][1])
    before = {k: v.clone() for k, v in build_pruned(chain, plan).state_dict().items()}
    proxy = imp.adapt(build_pruned(chain, plan), data, ImportanceSettings(mode="proxy", steps=2))
    tuned = imp.adapt(build_pruned(chain, plan), data, ImportanceSettings(mode="finetune", steps=2))
    weights = [k for k in before if k.endswith("weight")]
    assert all(torch.equal(proxy.state_dict()[k], before[k]) for k in weights)
    assert any(not torch.equal(proxy.state_dict()[k], before[k]) for k in before if k.endswith("running_mean"))
    assert any(not torch.equal(tuned.state_dict()[k], before[k]) for k in weights)


def test_store_ignores_results_of_other_settings(tmp_path: Path) -> None:
    ImportanceStore(tmp_path, ImportanceSettings(steps=5)).put("a", {"accuracy": 0.5, "importance": 1.0})
    assert ImportanceStore(tmp_path, ImportanceSettings(steps=6)).get("a") is None
    with pytest.raises(RuntimeError, match="missing"):
        load_importance(ImportanceStore(tmp_path, ImportanceSettings(steps=6)), ["a"])


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")
def test_fine_tune_importance_as_ray_tasks_equals_the_sequential_entries(setup, tmp_path: Path) -> None:
    import ray

    data, chain, changes = setup
    settings = ImportanceSettings(mode="finetune", steps=3, batch_size=16)
    sequential = ImportanceStore(tmp_path / "sequential", settings)
    expected = measure_importance(chain, changes, data, settings, sequential,
                                  executor=Executor(ExecutionConfig(backend="sequential")))
    tasks = ImportanceStore(tmp_path / "ray", settings)
    first = changes[0][0]
    tasks.put(first, {**sequential.get(first), "accuracy": -1.0})  # a stored entry is read, not recomputed
    try:
        got = measure_importance(chain, changes, data, settings, tasks,
                                 executor=Executor(ExecutionConfig(backend="ray")))
    finally:
        ray.shutdown()
    assert {k: v for k, v in got.items() if k != first} == {k: v for k, v in expected.items() if k != first}
    assert tasks.get(first)["accuracy"] == -1.0
    for key, _ in changes[1:]:
        assert tasks.get(key)["accuracy"] == sequential.get(key)["accuracy"]
