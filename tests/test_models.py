"""Model zoo: every registered model is built, run, traced and exported; factory errors; checkpoints."""

from __future__ import annotations

import io
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgekd.errors import UserError
from edgekd.models import (
    FORMAT,
    MODELS,
    SMALL_INPUT_BELOW,
    count_macs,
    count_parameters,
    create,
    layout_kwargs,
    load_checkpoint,
    load_weights,
    model_from_checkpoint,
    model_info,
    model_size_bytes,
    save_checkpoint,
)

ALL_MODELS = MODELS.names()


class _Unsafe:
    """An arbitrary pickled class: weights-only loading must refuse it."""


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _calibrated(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Give every BN the statistics of ``x`` (one train-mode pass), so eval outputs are O(1), then switch to eval."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average: after one batch, exactly that batch's statistics
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


def _single_line(exc: pytest.ExceptionInfo[UserError]) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


# ---------------------------------------------------------------------------------------------------- every model


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("in_channels", [1, 3])
def test_forward_shape_on_small_inputs(name: str, in_channels: int) -> None:
    model = create(name, num_classes=7, in_channels=in_channels).eval()
    with torch.no_grad():
        for size in (8, 28):
            out = model(torch.rand(2, in_channels, size, size))
            assert out.shape == (2, 7)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ALL_MODELS)
def test_registry_metadata_and_default_taps(name: str) -> None:
    entry = MODELS.entry(name)
    family = entry.meta["family"]
    assert family in {"resnet", "resnet-imagenet", "plain", "mobilenetv2"} and name.startswith(family.split("-")[0])
    assert entry.meta["paper"] and entry.meta["description"]
    taps = entry.meta["default_taps"]
    assert len(taps) >= 2
    model = create(name, in_channels=1).eval()
    outputs: dict[str, torch.Tensor] = {}
    handles = [
        model.get_submodule(path).register_forward_hook(lambda _m, _i, out, p=path: outputs.__setitem__(p, out))
        for path in taps
    ]
    with torch.no_grad():
        model(torch.rand(2, 1, 28, 28))
    for handle in handles:
        handle.remove()
    assert list(outputs) == taps  # every tap fires, in forward order
    sizes = [outputs[p].shape[-1] for p in taps]
    assert all(outputs[p].dim() == 4 for p in taps) and sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_fx_trace_names_every_layer_once(name: str) -> None:
    """LayerMerge works on the torch.fx graph: it must trace, match eager, and call each module at most once."""
    model = _calibrated(create(name), torch.rand(4, 3, 8, 8))
    graph = torch.fx.symbolic_trace(model)
    calls = Counter(node.target for node in graph.graph.nodes if node.op == "call_module")
    assert calls and max(calls.values()) == 1
    assert not [n for n in graph.graph.nodes if n.op == "call_function" and "relu" in str(n.target)]
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(graph(x), model(x))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_onnx_export_matches_onnxruntime(name: str) -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 8, 8)
    model = _calibrated(create(name), torch.rand(8, 3, 8, 8))
    buffer = io.BytesIO()
    torch.onnx.export(model, x, buffer, dynamo=False, opset_version=17)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        expected = model(x).numpy()
    assert expected.std() > 1e-3  # a meaningful comparison, not two vectors of zeros
    # float32 round-off grows with the logits' magnitude (about 100 for a random ResNet-50): scale the tolerance
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, atol=1e-4 * scale, rtol=1e-4)


# --------------------------------------------------------------------------------------------- parameter counts


def _cifar_resnet_params(depth: int, stages: tuple[int, int, int], stem: int, in_ch: int, classes: int) -> int:
    """Hand count of a CIFAR ResNet with option-B (1×1 conv + BN) shortcuts; BN has 2 parameters per channel."""
    n = (depth - 2) // 6
    total = 9 * in_ch * stem + 2 * stem
    c_in = stem
    for stride, width in zip((1, 2, 2), stages):
        total += (9 * c_in * width + 9 * width * width + 4 * width) + (n - 1) * (18 * width * width + 4 * width)
        if stride != 1 or c_in != width:
            total += c_in * width + 2 * width
        c_in = width
    return total + stages[-1] * classes + classes


def test_resnet_parameter_counts_match_the_papers() -> None:
    # He et al. 2016, Table 6 (option A, parameter-free shortcuts): 0.27M, 0.85M, 1.7M; option B adds the
    # 1×1 shortcut convs + BN of the two downsampling blocks: (16·32 + 64) + (32·64 + 128) = 2752 parameters.
    assert count_parameters(create("resnet20")) == 269_722 + 2752
    assert count_parameters(create("resnet56")) == 853_018 + 2752
    assert count_parameters(create("resnet110")) == 1_727_962 + 2752
    for depth in (8, 14, 26, 32, 44):
        expected = _cifar_resnet_params(depth, (16, 32, 64), 16, 1, 10)
        assert count_parameters(create(f"resnet{depth}", in_channels=1)) == expected
    # RepDistiller (Tian et al. 2020) CIFAR-100 wide students/teachers: resnet8x4 1.23M, resnet32x4 7.43M
    wide8 = count_parameters(create("resnet8x4", num_classes=100))
    assert wide8 == _cifar_resnet_params(8, (64, 128, 256), 32, 3, 100) and round(wide8 / 1e6, 2) == 1.23
    assert round(count_parameters(create("resnet32x4", num_classes=100)) / 1e6, 2) == 7.43


def test_plain_cnn_parameter_counts_by_hand() -> None:
    # plain2, CIFAR-10 plan: conv 3→16 (432) + BN (32), conv 16→16 (2304) + BN (32), linear 16→10 (170)
    assert count_parameters(create("plain2")) == 432 + 32 + 2304 + 32 + 170
    # plain8, CIFAR-100 plan, 1 input channel: convs 1-32-32-64-64-128-128-256-256, BN 2c each, head 256→64→100
    convs = [(1, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256)]
    expected = sum(9 * a * b + 2 * b for a, b in convs) + (256 * 64 + 64) + (64 * 100 + 100)
    assert count_parameters(create("plain8", num_classes=100, in_channels=1, plan="cifar100")) == expected


def test_mobilenetv2_matches_the_reference_port() -> None:
    # torchvision's mobilenet_v2 (1000 classes) has 3,504,872 parameters; small_input only changes strides
    assert count_parameters(create("mobilenetv2", num_classes=1000)) == 3_504_872
    assert count_parameters(create("mobilenetv2", num_classes=1000, small_input=False)) == 3_504_872
    half = create("mobilenetv2_x0_5")
    convs = [m for m in half.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.out_channels % 8 == 0 for m in convs)
    assert convs[0].out_channels == 16 and convs[-1].out_channels == 1280


def test_imagenet_resnets_match_torchvision_counts() -> None:
    # torchvision's resnet18/34/50 (1000 classes) and their MACs at 3×224×224 (torchvision docs: 1.81, 3.66,
    # 4.09 GFLOPS, its name for multiply-accumulates; He et al. 2016 Table 1: 1.8, 3.6, 3.8 × 10⁹ FLOPs)
    expected = {"resnet18": (11_689_512, 1.814e9), "resnet34": (21_797_672, 3.664e9), "resnet50": (25_557_032, 4.089e9)}
    for name, (params, macs) in expected.items():
        model = create(name, num_classes=1000)
        assert count_parameters(model) == params
        assert count_macs(model, (3, 224, 224)) == pytest.approx(macs, rel=1e-3)
    # the CIFAR variant of ResNet-18 (3×3 stem, no max-pool; kuangliu/pytorch-cifar): 11,173,962 with 10 classes
    assert count_parameters(create("resnet18", small_input=True)) == 11_173_962
    with torch.no_grad():
        for small_input, size, before_layer1 in ((False, 224, 56), (True, 32, 32)):  # stem stride 4 or 1
            net = create("resnet18", small_input=small_input).eval()
            assert net.maxpool(net.conv1(torch.rand(1, 3, size, size))).shape[-1] == before_layer1


def test_macs_by_hand_and_for_mobilenetv2() -> None:
    # conv 3→8, 3×3, stride 1, same padding on 10×10: 8·3·9·100 MACs; linear 800→5: 4000 MACs
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(800, 5))
    assert count_macs(net, (3, 10, 10)) == 8 * 3 * 9 * 100 + 800 * 5
    depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)  # C_in / groups = 1 per output channel
    assert count_macs(depthwise, (16, 7, 7)) == 16 * 9 * 49
    # Sandler et al. 2018, Table 4: MobileNetV2 1.0 at 224 px, 300M multiply-adds (ImageNet layout)
    mobile = create("mobilenetv2", num_classes=1000, small_input=False)
    assert count_macs(mobile, (3, 224, 224)) == pytest.approx(300e6, rel=0.01)
    # the small-input layout at 224 px: stride 8 instead of 32, so the features cost about 16× as much
    small = count_macs(create("mobilenetv2", num_classes=1000), (3, 224, 224))
    assert 12 < small / count_macs(mobile, (3, 224, 224)) < 16


def test_layout_follows_the_image_size() -> None:
    assert SMALL_INPUT_BELOW == 64
    assert layout_kwargs("mobilenetv2", (32, 32)) == {"small_input": True}
    assert layout_kwargs("mobilenetv2_x0_5", (224, 224)) == {"small_input": False}
    assert layout_kwargs("resnet18", (63, 200)) == {"small_input": True}
    assert layout_kwargs("resnet50", (64, 64)) == {"small_input": False}
    assert layout_kwargs("resnet8", (224, 224)) == {} and layout_kwargs("pkg.mod:fn", (224, 224)) == {}


def test_small_input_keeps_resolution() -> None:
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        small = create("mobilenetv2").eval().features(x)
        large = create("mobilenetv2", small_input=False).eval().features(x)
    assert small.shape[-1] == 4 and large.shape[-1] == 1  # 32 / 8 and 32 / 32


def test_model_size_bytes_counts_fp32() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    # params 18 + 2 + 2 + 2 floats, buffers 2 + 2 floats, num_batches_tracked one int64
    assert model_size_bytes(model) == (24 + 4) * 4 + 8
    assert model_size_bytes(model.half()) == (24 + 4) * 4 + 8


def test_model_info() -> None:
    info = model_info("resnet20")
    assert info["family"] == "resnet" and info["default_taps"] == ["layer1", "layer2", "layer3"]
    assert info["parameters"] == {"num_classes": 10, "in_channels": 3, "width": 1.0, "stem_channels": None}
    assert model_info("mobilenetv2_x0_5")["parameters"]["width_mult"] == 0.5


# ------------------------------------------------------------------------------------------ factory and errors


def test_width_multiplier_scales_channels() -> None:
    model = create("resnet8", width=0.5)
    assert model.conv1.out_channels == 8 and model.fc.in_features == 32


def test_unknown_name_suggests_close_names() -> None:
    with pytest.raises(UserError) as exc:
        create("resnet21")
    assert "resnet20" in _single_line(exc)


def test_bad_kwargs_name_model_and_accepted_parameters() -> None:
    with pytest.raises(UserError) as exc:
        create("resnet20", widht=2.0)
    message = _single_line(exc)
    assert "resnet20" in message and "widht" in message and "width=1.0" in message and "num_classes=10" in message
    with pytest.raises(UserError) as exc:
        create("plain4", plan="imagenet")
    assert "plain4" in _single_line(exc) and "cifar100" in str(exc.value)
    with pytest.raises(UserError, match="num_classes"):
        create("mobilenetv2", num_classes=0)


@pytest.fixture()
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    source = """
        from torch import nn

        def factory(num_classes=10, in_channels=3):
            return nn.Sequential(nn.Conv2d(in_channels, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(4, num_classes))

        def not_a_model(num_classes=10):
            return num_classes

        CONSTANT = 3
    """
    (tmp_path / "tests_helpers_module.py").write_text(textwrap.dedent(source))
    (tmp_path / "tests_broken_module.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "tests_helpers_module"


def test_user_model_by_import_path(user_module: str) -> None:
    model = create(f"{user_module}:factory", num_classes=5, in_channels=1)
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 5)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("tests_helpers_module:missing", "has no attribute 'missing'"),
        ("tests_helpers_module:not_a_model", "expected a torch.nn.Module"),
        ("tests_helpers_module:CONSTANT", "expected a callable"),
        ("tests_no_such_module_xyz:factory", "cannot import"),
        ("tests_broken_module:factory", "boom"),
        ("tests_helpers_module:", "package.module:factory"),
    ],
)
def test_user_model_errors(user_module: str, path: str, expected: str) -> None:
    with pytest.raises(UserError) as exc:
        create(path)
    assert expected in _single_line(exc) and path in str(exc.value)


def test_user_model_bad_kwargs(user_module: str) -> None:
    with pytest.raises(UserError) as exc:
        create(f"{user_module}:factory", depth=3)
    assert "depth" in _single_line(exc) and "in_channels=3" in str(exc.value)


# ---------------------------------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    spec = {"name": "resnet8", "kwargs": {"num_classes": 4, "in_channels": 1}}
    model = _calibrated(create(spec["name"], **spec["kwargs"]), torch.rand(4, 1, 8, 8))
    path = tmp_path / "ckpt" / "model.pt"
    save_checkpoint(path, model, spec=spec, epoch=3, metrics={"accuracy": 0.5}, ema=torch.ones(2))
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temp file left behind

    raw = torch.load(path, weights_only=True)  # safe format: plain containers and tensors only
    assert raw["format"] == FORMAT and raw["spec"] == spec and raw["epoch"] == 3
    payload = load_checkpoint(path)
    assert payload["metrics"] == {"accuracy": 0.5} and torch.equal(payload["ema"], torch.ones(2))

    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(model_from_checkpoint(path).eval()(x), expected, rtol=0, atol=0)
        torch.testing.assert_close(model_from_checkpoint(payload).eval()(x), expected, rtol=0, atol=0)
        fresh = load_weights(create("resnet8", num_classes=4, in_channels=1), path).eval()
        torch.testing.assert_close(fresh(x), expected, rtol=0, atol=0)


def test_plain_state_dict_files(tmp_path: Path) -> None:
    model = create("resnet8", in_channels=1)
    plain, wrapped = tmp_path / "plain.pt", tmp_path / "wrapped.pt"
    torch.save(model.state_dict(), plain)
    torch.save({"epoch": 1, "model": model.state_dict()}, wrapped)  # RepDistiller / TAKD training checkpoints
    with pytest.raises(UserError) as exc:
        load_checkpoint(plain)
    assert "not an edgekd checkpoint" in _single_line(exc)
    for path in (plain, wrapped):
        loaded = load_weights(create("resnet8", in_channels=1), path)
        assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))

    # resnet14 has one more block per stage: 3 blocks × (2 convs + 2 BNs with 5 entries each) = 36 missing keys
    with pytest.raises(UserError) as exc:
        load_weights(create("resnet14", in_channels=1), plain)
    message = _single_line(exc)
    assert message.startswith(f"{plain}: weights do not match CifarResNet: ")
    assert "missing (36): layer1.1.conv1.weight, layer1.1.bn1.weight, layer1.1.bn1.bias, ..." in message
    assert "unexpected" not in message and "shape" not in message
    with pytest.raises(UserError) as exc:
        load_weights(create("resnet8", in_channels=3), plain)
    assert _single_line(exc).endswith("shape mismatch (1): conv1.weight (16, 1, 3, 3) vs (16, 3, 3, 3)")


def test_the_same_checkpoint_has_the_same_bytes_under_any_name(tmp_path: Path) -> None:
    """Identical trainings give identical files (SHA-256 keys of later stages depend on it), whatever the file name
    and the temporary name it was written under."""
    spec = {"name": "plain2", "kwargs": {"num_classes": 3, "in_channels": 1}}
    torch.manual_seed(0)
    model = create(spec["name"], **spec["kwargs"])
    save_checkpoint(tmp_path / "a" / "teacher.pt", model, spec=spec)
    save_checkpoint(tmp_path / "b" / "other.pt", model, spec=spec)
    assert (tmp_path / "a" / "teacher.pt").read_bytes() == (tmp_path / "b" / "other.pt").read_bytes()


def test_bad_checkpoint_files(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x04 this is not a torch file")
    with pytest.raises(UserError) as exc:
        load_checkpoint(corrupt)
    assert str(corrupt) in _single_line(exc)
    with pytest.raises(UserError) as exc:
        model_from_checkpoint(tmp_path / "absent.pt")
    assert "not found" in _single_line(exc)

    unsafe = tmp_path / "unsafe.pt"
    torch.save({"format": FORMAT, "obj": _Unsafe()}, unsafe)
    with pytest.raises(UserError) as exc:
        load_checkpoint(unsafe)
    assert "Unsupported global" in _single_line(exc) and "_Unsafe" in str(exc.value)


def test_malformed_checkpoint_contents(tmp_path: Path) -> None:
    model = create("plain2")
    with pytest.raises(UserError) as exc:
        model_from_checkpoint({"format": FORMAT, "spec": {"name": "plain2"}, "state_dict": model.state_dict()})
    assert "key 'spec'" in _single_line(exc)
    path = tmp_path / "renamed.pt"
    save_checkpoint(path, model, spec={"name": "plain3", "kwargs": {}})
    with pytest.raises(UserError) as exc:
        model_from_checkpoint(path)
    message = _single_line(exc)  # names the file, and the registry suggests close names
    assert message.startswith(f"{path}: unknown model 'plain3'; did you mean") and "plain4" in message
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(path, model, spec={"name": "plain2", "kwargs": {}}, state_dict={})
