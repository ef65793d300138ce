"""Bring your own model: outputs as users' models return them, factories told the data's shape, the one-batch check.

The stand-in user models are in tests/byo_models.py (``tests.byo_models:factory``): a small CNN whose forward returns
a Hugging Face style output object with ``.logits``, a dict, a tuple or a tensor, with no new dependency.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.distill.taps import FeatureTaps
from edgekd.errors import UserError
from edgekd.export.onnx import export_onnx
from edgekd.models import check_model, create, logits_of, model_from_checkpoint, save_checkpoint
from edgekd.stages._models import model_spec
from tests.byo_models import ClassifierOutput, TinyClassifier
from tests.conftest import ROOT, run_cli

QUICKSTART = str(ROOT / "pipelines" / "quickstart.yaml")
BYO = "tests.byo_models:factory"
CLASSES = ("circle", "square", "stripes")


def _reference_logits(net: TinyClassifier, x: torch.Tensor) -> torch.Tensor:
    """The head's output computed layer by layer, independent of the model's forward and of edgekd's rule."""
    return net.head(net.pool(net.stem(x)).flatten(1))


# ------------------------------------------------------------------------------------------------------- the rule


def test_logits_rule_tensor_then_logits_then_first_element() -> None:
    logits, other = torch.ones(2, 3), torch.zeros(2, 8)
    assert logits_of(logits) is logits
    assert logits_of(ClassifierOutput(logits=logits, pooler_output=other)) is logits
    assert logits_of({"pooler_output": other, "logits": logits}) is logits  # the key, not the first value
    assert logits_of((logits, other)) is logits
    assert logits_of([other, logits]) is other  # no .logits: the first element, whatever it holds
    for bad in (None, {"scores": logits}, (), ("text", logits)):
        with pytest.raises(TypeError, match="found no tensor"):
            logits_of(bad)


@pytest.mark.parametrize("returns", ["object", "dict", "tuple", "tensor"])
def test_user_model_returns_its_logits(returns: str) -> None:
    net = create(BYO, num_classes=3, in_channels=3, returns=returns).eval()
    x = torch.rand(4, 3, 12, 12)
    with torch.no_grad():
        out = net(x)
        assert isinstance(out, torch.Tensor)
        torch.testing.assert_close(out, _reference_logits(net, x), rtol=0, atol=0)


def test_hook_keeps_state_dict_keys_and_module_paths() -> None:
    raw = TinyClassifier(3, 3, "object")
    net = create(BYO, num_classes=3)
    assert list(net.state_dict()) == list(raw.state_dict())
    assert [name for name, _ in net.named_modules()] == [name for name, _ in raw.named_modules()]


def test_feature_taps_on_a_user_model() -> None:
    net = create(BYO, num_classes=3, returns="dict").eval()
    x = torch.rand(2, 3, 12, 12)
    with torch.no_grad(), FeatureTaps(net, ["stem", "head"]) as taps:
        logits = net(x)
        stem, head = taps.features()
    assert stem.shape == (2, 8, 12, 12)
    torch.testing.assert_close(head, logits, rtol=0, atol=0)


def test_checkpoint_reload_returns_logits(tmp_path: Path) -> None:
    net = create(BYO, num_classes=3, returns="object").eval()
    save_checkpoint(tmp_path / "byo.pt", net, spec={"name": BYO, "kwargs": {"num_classes": 3, "returns": "object"}})
    again = model_from_checkpoint(tmp_path / "byo.pt").eval()
    x = torch.rand(2, 3, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(again(x), _reference_logits(net, x), rtol=0, atol=0)


@pytest.mark.parametrize("returns", ["object", "tuple"])
def test_onnx_export_outputs_the_logits(tmp_path: Path, returns: str) -> None:
    import onnx
    import onnxruntime as ort

    net = create(BYO, num_classes=3, returns=returns).eval()
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    path = export_onnx(net, mean, std, torch.rand(1, 3, 12, 12), tmp_path / "byo.onnx")
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["logits"]
    x = torch.rand(5, 3, 12, 12)
    (got,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})
    normalised = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        np.testing.assert_allclose(got, _reference_logits(net, normalised).numpy(), rtol=1e-5, atol=1e-5)


# -------------------------------------------------------------------------------------- factories told the shape


def test_user_factories_get_the_data_shape_when_they_name_it() -> None:
    data = SimpleNamespace(num_classes=3, in_channels=1, image_size=(28, 28))
    ref = SimpleNamespace(name=BYO, kwargs={})
    assert model_spec(ref, data)["kwargs"] == {"num_classes": 3, "in_channels": 1}
    ref = SimpleNamespace(name=BYO, kwargs={"num_classes": 7, "returns": "tuple"})  # the recipe's kwargs win
    assert model_spec(ref, data)["kwargs"] == {"num_classes": 7, "in_channels": 1, "returns": "tuple"}
    ref = SimpleNamespace(name="tests.byo_models:classes_only", kwargs={})
    assert model_spec(ref, data)["kwargs"] == {"num_classes": 3}
    ref = SimpleNamespace(name="tests.byo_models:ten_classes", kwargs={})
    assert model_spec(ref, data)["kwargs"] == {"in_channels": 1}
    ref = SimpleNamespace(name="resnet8", kwargs={})
    assert model_spec(ref, data)["kwargs"] == {"num_classes": 3, "in_channels": 1}


# ---------------------------------------------------------------------------------------------- one-batch check


def _check_message(net: nn.Module, num_classes: int = 3) -> str:
    with pytest.raises(UserError) as exc:
        check_model(net, (3, 12, 12), num_classes, "teacher model 'pkg:build'")
    message = str(exc.value)
    assert "\n" not in message and message.startswith("teacher model 'pkg:build': ")
    return message


def test_check_model_accepts_n_by_classes_and_leaves_mode_and_rng_alone() -> None:
    net = create(BYO, num_classes=3).train()
    state = torch.get_rng_state()
    check_model(net, (3, 12, 12), 3, "teacher")
    assert net.training and torch.equal(state, torch.get_rng_state())
    assert net.stem[1].num_batches_tracked.item() == 0  # eval mode: batch-norm statistics untouched


def test_check_model_names_both_shapes() -> None:
    message = _check_message(create("tests.byo_models:ten_classes"))
    assert "(2, 10)" in message and "expected (2, 3)" in message
    message = _check_message(create(BYO, num_classes=3, returns="features-first"))
    assert "(2, 8)" in message and "expected (2, 3)" in message


def test_check_model_names_the_forward_failure() -> None:
    message = _check_message(create("tests.byo_models:raising", num_classes=3))
    assert "RuntimeError: expected 4 features, got shape (2, 3, 12, 12)" in message
    assert "second line" not in message
    message = _check_message(create(BYO, num_classes=3, returns="none"))
    assert "TypeError" in message and "NoneType" in message and ".logits" in message


# ------------------------------------------------------------------------------------------- import-time noise


def test_user_module_import_noise_is_kept_off_the_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "noisy_user_models.py").write_text(textwrap.dedent("""
        import logging, warnings
        from torch import nn
        warnings.warn("a third-party deprecation at import", DeprecationWarning)
        logging.getLogger("noisy.lib").warning("Failed to load noisy/_C_kernel.so")
        logging.getLogger("noisy.lib").error("a real error at import")

        def factory(num_classes):
            warnings.warn("a warning while the factory runs", UserWarning)
            return nn.Linear(4, num_classes)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        create("noisy_user_models:factory", num_classes=3)
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "noisy.lib"] == [
        ("ERROR", "a real error at import")  # errors still show
    ]
    assert [str(w.message) for w in seen] == ["a warning while the factory runs"]  # only the import was quieted
    assert logging.root.manager.disable == logging.NOTSET


def test_torchao_import_noise_gone_from_a_user_model(tmp_path: Path) -> None:
    """A user module importing a library that imports torchao (as ``transformers`` does)."""
    if importlib.util.find_spec("torchao") is None:
        pytest.skip("torchao is not installed")
    bare = subprocess.run([sys.executable, "-c", "import torchao"], capture_output=True, text=True, timeout=120)
    if not bare.stderr.strip():
        pytest.skip("torchao imports silently on this machine: nothing to keep off the terminal")
    (tmp_path / "torchao_user_models.py").write_text(
        "import torchao  # noqa: F401\nfrom torch import nn\n\ndef factory(num_classes):\n"
        "    return nn.Linear(4, num_classes)\n"
    )
    code = "from edgekd.models import create; create('torchao_user_models:factory', num_classes=3); print('built')"
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                           cwd=tmp_path, env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": ""})
    assert quiet.returncode == 0 and quiet.stdout.strip() == "built"
    assert quiet.stderr == ""


# ---------------------------------------------------------------------------------- the quickstart, end to end


def _image_folder(root: Path, per_class: int = 16) -> Path:
    """RGB JPEGs of mixed sizes, 3 classes with different colours and patterns, in root/train/<class>/."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    sizes = [(20, 14), (33, 40), (16, 16), (50, 25), (27, 31)]
    for label, name in enumerate(CLASSES):
        folder = root / "train" / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            w, h = sizes[(i + label) % len(sizes)]
            colour = tuple(int(c) for c in np.clip(np.eye(3)[label] * 200 + rng.integers(0, 55, 3), 0, 255))
            image = Image.new("RGB", (w, h), (20, 20, 20))
            draw = ImageDraw.Draw(image)
            if name == "circle":
                draw.ellipse((w // 4, h // 4, 3 * w // 4, 3 * h // 4), fill=colour)
            elif name == "square":
                draw.rectangle((w // 4, h // 4, 3 * w // 4, 3 * h // 4), fill=colour)
            else:
                for y in range(0, h, 4):
                    draw.line((0, y, w, y), fill=colour, width=2)
            image.save(folder / f"{i:02d}.jpg", quality=90)
    return root


def _byo_args(run_dir: Path, data_root: Path, *extra: str) -> list[str]:
    sets = [f"teacher.model.name={BYO}", "data.name=image-folder", f"data.params.root={data_root}",
            "data.params.image_size=16", *extra]
    return ["run", QUICKSTART, "--device", "x86-cpu", "--out", str(run_dir), "--smoke",
            *(arg for item in sets for arg in ("--set", item))]


@pytest.mark.slow
def test_quickstart_with_a_user_teacher_on_an_image_folder(tmp_path: Path) -> None:
    import onnxruntime as ort

    data_root = _image_folder(tmp_path / "images")
    run_dir = tmp_path / "run"
    result = run_cli(*_byo_args(run_dir, data_root, f"student.model.name={BYO}", "student.model.kwargs.returns=tuple",
                                "bench.warmup=2", "bench.runs=5"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Failed to load" not in result.stderr and "internal error" not in result.stderr
    manifest = json.loads((run_dir / "manifest.json").read_text())
    artifacts = {a["name"]: a for a in manifest["artifacts"]}
    assert artifacts["teacher"]["info"]["model"] == {"name": BYO, "kwargs": {"num_classes": 3, "in_channels": 3}}
    assert artifacts["student"]["info"]["model"]["kwargs"] == {"num_classes": 3, "in_channels": 3, "returns": "tuple"}
    # the torch artifacts were reloaded from their checkpoints and measured, the OpenVINO IRs passed parity with torch
    assert {"accuracy", "latency_ms"} <= set(artifacts["teacher"]["metrics"])
    assert artifacts["student-openvino-fp32"]["status"] == "ok"
    onnx_artifact = artifacts["student-onnx-fp32"]
    assert onnx_artifact["status"] == "ok" and onnx_artifact["input"]["shape"] == [-1, 3, 16, 16]
    session = ort.InferenceSession(str(run_dir / onnx_artifact["path"]), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits"]
    (logits,) = session.run(None, {"input": np.random.default_rng(1).random((5, 3, 16, 16), dtype=np.float32)})
    assert logits.shape == (5, 3)


def test_teacher_with_wrong_outputs_is_exit_2_before_training(tmp_path: Path) -> None:
    """A teacher with 10 outputs on a 3-class data set is exit 2 before any training, not a crash in distill."""
    data_root = _image_folder(tmp_path / "images")
    result = run_cli(*_byo_args(tmp_path / "run", data_root, "teacher.model.name=tests.byo_models:ten_classes"))
    assert result.returncode == 2, result.stdout + result.stderr
    line = next(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert "teacher model 'tests.byo_models:ten_classes'" in line and "(2, 10)" in line and "expected (2, 3)" in line
    assert "epochs" not in result.stderr  # no training started


def test_student_with_wrong_outputs_is_exit_2_before_distilling(tmp_path: Path) -> None:
    data_root = _image_folder(tmp_path / "images")
    weights = tmp_path / "teacher-weights.pt"
    torch.save(create(BYO, num_classes=3, in_channels=3).state_dict(), weights)  # a teacher taken as is: no training
    result = run_cli(*_byo_args(tmp_path / "run", data_root, "teacher.train=null",
                                f"teacher.model.checkpoint={weights}",
                                "student.model.name=tests.byo_models:ten_classes"))
    assert result.returncode == 2, result.stdout + result.stderr
    line = next(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert "student model 'tests.byo_models:ten_classes'" in line and "(2, 10)" in line and "expected (2, 3)" in line
    assert not (tmp_path / "run" / "distill" / "student.pt").exists()
