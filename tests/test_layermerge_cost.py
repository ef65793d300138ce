"""benchmarks/layermerge_cost.py: it builds the table the prune stage builds, counts its timings and re-builds it
from the cache without timing again."""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from torch import nn

import edgekd.prune.context as context_mod
from edgekd.data import load_dataset
from edgekd.models import create
from edgekd.prune.graph import analyse
from edgekd.prune.latency import LatencySettings
from edgekd.prune.segments import candidate_options
from edgekd.runtime import Normalize

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from layermerge_cost import measure  # noqa: E402


def test_one_pair_per_change_that_alters_the_network_and_nothing_timed_warm(monkeypatch) -> None:
    opened: list[tuple[int, ...]] = []

    @contextmanager
    def fake_open(net, example, settings):  # a latency that falls as merging and pruning remove convs
        opened.append(tuple(example.shape))
        ms = float(sum(isinstance(m, nn.Conv2d) for m in net.modules()))
        yield lambda: ms

    def fake_interleaved(calls, settings):
        return [{"p50": call(), "mean": call(), "runs": 1} for call in calls]

    monkeypatch.setattr(context_mod, "open_module", fake_open)
    monkeypatch.setattr(context_mod, "measure_interleaved", fake_interleaved)
    data = load_dataset("digits", {}, val_fraction=0.1, seed=0)
    args = argparse.Namespace(batch_size=2, max_kernel=None, sample=3, steps=1, resolution=0.01)
    row = measure(8, data, LatencySettings(device="test-cpu"), args, console=None)

    chain = analyse(create("resnet8", num_classes=10, in_channels=1),
                    Normalize(data.mean, data.std)(data.val.x[:1]))
    options = candidate_options(chain)
    droppable = sum(layer.droppable for layer in chain.layers)
    # every layer kept as its own segment is the unpruned network: one untimed entry per layer
    timed = len(options) + droppable - chain.depth
    assert (row["entries"], row["changes"], row["timed"]) == (len(options), len(options) + droppable, timed)
    assert row["timings"] == timed  # one pair per change, each beside the unpruned network
    assert len(opened) == timed + 1  # every changed network, and the unpruned one once; the warm build opened none
    assert set(opened) == {(2, 1, 8, 8)}
    convs = sum(isinstance(m, nn.Conv2d) for m in chain.module.modules())
    assert row["unpruned_ms"] == convs and row["reference_spread"] == 0.0
    for mode in ("proxy", "finetune"):
        assert row[f"{mode}_s_per_entry"] > 0
        assert row[f"{mode}_total_s"] == pytest.approx(row[f"{mode}_s_per_entry"] * row["changes"])
    assert row["layers"] == chain.depth and row["dp_s"] > 0
