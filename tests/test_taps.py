"""FeatureTaps: forward hooks by module path that collect features and leave the model untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgekd.distill.taps import FeatureTaps
from edgekd.errors import UserError


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = Block(1, 4, 1)
        self.layer1 = Block(4, 8, 2)
        self.features = nn.Sequential(nn.Conv2d(8, 8, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(self.layer1(self.stem(x)))).flatten(1))


def _all_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_collects_outputs_in_tap_order_with_their_shapes() -> None:
    model = TinyNet()
    with FeatureTaps(model, ["features.2", "layer1", "stem.conv", "fc"]) as taps:
        logits = model(torch.rand(2, 1, 8, 8))
        shapes = [tuple(f.shape) for f in taps.features()]
        assert torch.equal(taps.features()[3], logits)
    assert shapes == [(2, 16, 2, 2), (2, 8, 4, 4), (2, 4, 8, 8), (2, 3)]


def test_hooks_are_removed_on_close_and_exit() -> None:
    model = TinyNet()
    assert _all_hooks(model) == 0
    taps = FeatureTaps(model, ["layer1", "features.0"])
    assert len(model.layer1._forward_hooks) == 1 and len(model._forward_pre_hooks) == 1
    taps.close()
    taps.close()  # idempotent
    assert _all_hooks(model) == 0
    with FeatureTaps(model, ["stem"]):
        assert _all_hooks(model) == 2
    assert _all_hooks(model) == 0
    assert model.state_dict().keys() == TinyNet().state_dict().keys()


def test_each_forward_starts_a_fresh_collection() -> None:
    model = TinyNet()
    with FeatureTaps(model, ["layer1"]) as taps:
        model(torch.rand(2, 1, 8, 8))
        first = taps.features()[0]
        model(torch.rand(5, 1, 8, 8))
        assert taps.features()[0].shape[0] == 5 and first.shape[0] == 2
        taps.clear()
        with pytest.raises(UserError, match="did not run in the last forward"):
            taps.features()


def test_student_features_carry_gradients_teacher_features_do_not() -> None:
    student, teacher = TinyNet(), TinyNet().eval()
    with FeatureTaps(student, ["layer1"]) as s_taps, FeatureTaps(teacher, ["layer1"]) as t_taps:
        x = torch.rand(2, 1, 8, 8)
        student(x)
        with torch.no_grad():
            teacher(x)
        (s_feat,), (t_feat,) = s_taps.features(), t_taps.features()
        assert s_feat.requires_grad and not t_feat.requires_grad
        s_feat.pow(2).mean().backward()
        assert student.layer1.conv.weight.grad is not None and student.fc.weight.grad is None


def test_stored_output_is_not_changed_by_a_later_inplace_op() -> None:
    model = TinyNet()
    with FeatureTaps(model, ["stem.bn", "stem.relu"]) as taps:
        model(torch.randn(2, 1, 8, 8))
        bn_out, relu_out = taps.features()
    assert (bn_out < 0).any()  # the in-place ReLU after the BN did not clip the stored copy
    assert torch.equal(relu_out, bn_out.clamp(min=0))


def test_same_path_twice_and_tuple_outputs() -> None:
    class TupleOut(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(3, 4, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lstm(x)[0]

    model = TupleOut()
    with FeatureTaps(model, ["lstm", "lstm"]) as taps:
        out = model(torch.rand(2, 5, 3))
        first, second = taps.features()
    assert torch.equal(first, out) and first is second


def test_unknown_path_lists_valid_paths_and_suggests() -> None:
    with pytest.raises(UserError) as info:
        FeatureTaps(TinyNet(), ["layer2"])
    message = str(info.value)
    assert "\n" not in message and "unknown layer path 'layer2' in TinyNet" in message
    assert "did you mean 'layer1'" in message and "features.2" in message


def test_unknown_path_in_a_large_model_lists_top_level_only() -> None:
    model = nn.Sequential(*[nn.Sequential(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2), nn.ReLU()) for _ in range(15)])
    with pytest.raises(UserError) as info:
        FeatureTaps(model, ["14.5"])
    message = str(info.value)
    assert "valid top-level paths: 0, 1, 2" in message and "60 paths in all" in message and "'0.0'" in message
    assert "did you mean '14.2', '14.1', '14.0'?" in message


def test_empty_or_string_paths_are_rejected() -> None:
    with pytest.raises(UserError, match="no layer paths"):
        FeatureTaps(TinyNet(), [])
    with pytest.raises(TypeError):
        FeatureTaps(TinyNet(), "layer1")
