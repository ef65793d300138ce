"""Pruned vs merged LayerMerge networks of zoo models on real Fashion-MNIST images, and their ONNX export."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.data import load_dataset
from edgekd.export.onnx import check_parity, export_onnx
from edgekd.models import create
from edgekd.prune.apply import build_merged, build_pruned
from edgekd.prune.dp import Entry, solve
from edgekd.prune.graph import Chain, analyse
from edgekd.prune.segments import Plan, candidate_options
from edgekd.runtime import deployable, open_runner

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(not (FMNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(),
                                reason=f"Fashion-MNIST IDX files not in {FMNIST_DIR}")


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, tuple[float, ...], tuple[float, ...]]:
    bundle = load_dataset("fashion-mnist", {"limit_train": 200}, data_dir=FMNIST_DIR, val_fraction=0.0)
    return bundle.test.x[:32], bundle.mean, bundle.std


def _randomised(name: str) -> nn.Module:
    """A zoo model with random BN statistics and affine parameters (so that folding is not trivial)."""
    torch.manual_seed(0)
    net = create(name, num_classes=10, in_channels=1)
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return net.eval()


def _plans(chain: Chain) -> list[Plan]:
    """The DP's plans on a random table at a tight and a loose budget, plus the most merged plan."""
    options = candidate_options(chain, max_kernel=7)
    rng = random.Random(0)
    entries = [Entry(o, rng.uniform(0.01, 0.1) * o.kernel, rng.uniform(0.8, 1.0)) for o in options]
    plans = []
    for budget in (0.4 * chain.depth, 2.0 * chain.depth):
        try:
            plans.append(solve(entries, chain.depth, budget, resolution_ms=0.01).plan)
        except Exception:  # a tight budget may be infeasible for this table
            continue
    # a negative importance per segment makes the DP pick the fewest segments: the most merged plan
    longest = solve([Entry(e.option, 0.01, -1.0) for e in entries], chain.depth, 1e3, resolution_ms=0.01)
    pruned_only = Plan.layer_pruned(chain, [layer.index for layer in chain.layers if layer.droppable][:3])
    return plans + [pruned_only, longest.plan]


def _normalised(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


@pytest.mark.parametrize("name", ["resnet8", "plain4", pytest.param("mobilenetv2_x0_5", marks=pytest.mark.slow)])
def test_merged_equals_pruned_on_real_images(name: str, images, tmp_path: Path) -> None:
    x, mean, std = images
    net = _randomised(name)
    xn = _normalised(x, mean, std)
    chain = analyse(net, xn[:1])
    with torch.no_grad():
        assert torch.allclose(build_pruned(chain, Plan.unpruned(chain))(xn), net(xn), atol=1e-5)
    plans = _plans(chain)
    assert any(len(p.segments) < chain.depth for p in plans)  # something is actually merged
    for plan in plans:
        pruned = build_pruned(chain, plan)
        # a pruned network is fine-tuned in practice: perturb its weights so merging uses *its* parameters
        with torch.no_grad():
            for p in pruned.parameters():
                p.mul_(1.0 + 0.05 * torch.randn_like(p))
        pruned.eval()
        merged = build_merged(chain, plan, pruned).eval()
        convs = sum(isinstance(m, nn.Conv2d) for m in merged.modules())
        assert convs <= len(plan.segments) + len(chain.skips)
        with torch.no_grad():
            a, b = pruned(xn), merged(xn)
        assert float((a - b).abs().max() / a.abs().max()) < 1e-4


def test_merged_network_exports_to_onnx_with_parity(images, tmp_path: Path) -> None:
    x, mean, std = images
    net = _randomised("resnet8")
    chain = analyse(net, _normalised(x[:1], mean, std))
    plan = _plans(chain)[-1]
    pruned = build_pruned(chain, plan).eval()
    merged = build_merged(chain, plan, pruned).eval()
    path = export_onnx(merged, mean, std, x[:2], tmp_path / "merged.onnx")
    reference = deployable(pruned, mean, std).eval()

    def torch_logits(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return reference(torch.from_numpy(batch)).numpy()

    with open_runner("onnxruntime", path, threads=1) as runner:
        result = check_parity(torch_logits, runner, x.numpy(), atol=1e-3)
    assert result["passed"], result


def test_merged_network_rebuilds_from_model_spec_plan_and_weights(images) -> None:
    """How a stage stores a merged network: the zoo spec, the plan as JSON, and the merged state dict."""
    x, mean, std = images
    xn = _normalised(x[:4], mean, std)
    chain = analyse(_randomised("resnet8"), xn[:1])
    plan = _plans(chain)[-1]
    merged = build_merged(chain, plan, build_pruned(chain, plan)).eval()
    saved = Plan.from_json(json.loads(json.dumps(plan.to_json())))
    assert saved == plan
    skeleton_chain = analyse(create("resnet8", num_classes=10, in_channels=1), xn[:1])  # fresh random weights
    rebuilt = build_merged(skeleton_chain, saved)
    rebuilt.load_state_dict(merged.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(xn), merged(xn))
