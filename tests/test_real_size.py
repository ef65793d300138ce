"""Real-size inputs: on-disk images, the layout chosen from the image size, the memory guard, the 224 px recipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import FMNIST_DIR, ROOT, run_cli
from edgekd.config import ModelRef, TrainConfig
from edgekd.data import DataBundle, Split, load_dataset
from edgekd.data.bundle import channel_stats
from edgekd.data.images import ImageArray, write_store
from edgekd.distill import memory
from edgekd.distill.teacher_cache import split_digest
from edgekd.distill.trainer import Trainer
from edgekd.errors import UserError
from edgekd.stages._models import model_spec

MIB = 1 << 20


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private home folder: the decoded-image caches (~/.cache/edgekd/...) go under tmp_path."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _store(tmp_path: Path, array: np.ndarray) -> np.ndarray:
    with write_store(tmp_path / "store.npy", array.shape, array.dtype) as out:
        out[:] = array
    return np.load(tmp_path / "store.npy", mmap_mode="r")


def _vm(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith(field + ":"))


# ------------------------------------------------------------------------------------------------ ImageArray


def test_image_array_indexes_like_the_float_tensor(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (10, 3, 4, 5), dtype=np.uint8)
    images = ImageArray(_store(tmp_path, pixels))
    tensor = torch.from_numpy(pixels).float() / 255  # what the in-memory loaders hold
    assert images.shape == tensor.shape and len(images) == 10 and images.dtype == torch.float32
    for key in (3, -1, slice(2, 7), slice(None, None, 3), torch.tensor([9, 0, 4]), [1, 1], (2, 0), (slice(1, 3), 2)):
        assert torch.equal(images[key], tensor[key]), key
    view = images.index_select(0, torch.tensor([8, 2, 5, 1])).index_select(0, torch.tensor([3, 0]))
    assert isinstance(view, ImageArray) and torch.equal(view[:], tensor[[1, 8]])  # lazy views compose
    assert torch.equal(torch.cat([view, images[:1]]), tensor[[1, 8, 0]])  # torch functions see the tensor
    assert np.array_equal(view.numpy(), tensor[[1, 8]].numpy()) and len(list(images)) == 10
    with pytest.raises(IndexError):
        images[torch.tensor([10])]


def test_chunked_statistics_and_digest_match_the_tensor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("edgekd.data.images.ROWS_PER_CHUNK", 3)  # several chunks on 10 rows
    floats = np.random.default_rng(1).random((10, 2, 3, 3), dtype=np.float32)
    images, tensor = ImageArray(_store(tmp_path, floats)), torch.from_numpy(floats)
    mean, std = channel_stats(images)
    expected_mean, expected_std = channel_stats(tensor)
    assert mean == pytest.approx(expected_mean, abs=1e-6) and std == pytest.approx(expected_std, abs=1e-6)
    y = torch.arange(10) % 2
    assert split_digest(Split(images, y)) == split_digest(Split(tensor, y))  # the teacher cache key is unchanged


def test_npz_compressed_or_not_is_memory_mapped(tmp_path: Path, home: Path) -> None:
    rng = np.random.default_rng(2)
    arrays = {"x_train": rng.integers(0, 256, (40, 6, 6, 3), dtype=np.uint8), "y_train": np.arange(40) % 4,
              "x_test": rng.integers(0, 256, (8, 6, 6, 3), dtype=np.uint8), "y_test": np.arange(8) % 4}
    np.savez(tmp_path / "stored.npz", **arrays)
    np.savez_compressed(tmp_path / "packed.npz", **arrays)
    expected = torch.from_numpy(arrays["x_test"].transpose(0, 3, 1, 2).copy()).float() / 255
    for name in ("stored.npz", "packed.npz"):
        bundle = load_dataset("npz", {"path": tmp_path / name}, val_fraction=0.25)
        assert isinstance(bundle.test.x, ImageArray) and isinstance(bundle.test.x.store, np.memmap)
        assert torch.equal(bundle.test.x[:], expected) and len(bundle.train) == 30
    assert len(list((home / ".cache" / "edgekd" / "npz").iterdir())) == 2  # one unpacked copy per file


def test_image_folder_cache_is_made_once_and_follows_the_files(tmp_path: Path, home: Path) -> None:
    from PIL import Image

    for k, colour in enumerate([(250, 0, 0), (0, 0, 250)]):
        (tmp_path / "set" / "train" / f"c{k}").mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (9 + i, 7), colour).save(tmp_path / "set" / "train" / f"c{k}" / f"{i}.png")
    params = {"root": tmp_path / "set", "image_size": 5, "test_fraction": 0.5}
    first = load_dataset("image-folder", params, val_fraction=0.0)
    caches = list((home / ".cache" / "edgekd" / "image-folder").glob("*/images.npy"))
    assert len(caches) == 1 and np.load(caches[0]).dtype == np.uint8 and np.load(caches[0]).shape == (12, 3, 5, 5)
    stamp = caches[0].stat().st_mtime_ns
    again = load_dataset("image-folder", params, val_fraction=0.0)
    assert caches[0].stat().st_mtime_ns == stamp and torch.equal(again.train.x[:], first.train.x[:])
    Image.new("RGB", (9, 7), (0, 250, 0)).save(tmp_path / "set" / "train" / "c0" / "0.png")  # an edited image
    load_dataset("image-folder", params, val_fraction=0.0)
    assert len(list((home / ".cache" / "edgekd" / "image-folder").glob("*/images.npy"))) == 2


def test_predict_reads_on_disk_images_batch_by_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd.runtime import evaluate_accuracy
    from edgekd.runtime.base import predict

    pixels = np.random.default_rng(4).integers(0, 256, (10, 3, 2, 2), dtype=np.uint8)
    images = ImageArray(_store(tmp_path, pixels))
    monkeypatch.setattr(ImageArray, "numpy", lambda self: pytest.fail("the whole split was materialised"))
    seen: list[tuple[type, int]] = []

    def runner(batch: np.ndarray) -> np.ndarray:
        seen.append((type(batch), len(batch)))
        return batch.reshape(len(batch), -1)[:, :3]

    expected = (pixels.astype(np.float32) / 255).reshape(10, -1)[:, :3]
    np.testing.assert_array_equal(predict(runner, images, 4), expected)
    assert seen == [(np.ndarray, 4), (np.ndarray, 4), (np.ndarray, 2)]
    labels = expected.argmax(1)
    labels[0] = (labels[0] + 1) % 3
    assert evaluate_accuracy(runner, images, labels, batch_size=3) == pytest.approx(0.9)


# ---------------------------------------------------------------------------------------------------- layout


def test_the_layout_follows_the_image_size_unless_the_recipe_sets_it() -> None:
    def spec(name: str, size: int, **kwargs: object) -> dict:
        data = DataBundle("d", *([Split(torch.zeros(2, 3, 1, 1), torch.zeros(2, dtype=torch.int64))] * 3), 10, 3,
                          (size, size), (0.5,) * 3, (0.2,) * 3, tuple("0123456789"), "t")
        return model_spec(ModelRef(name=name, kwargs=kwargs), data)["kwargs"]

    assert spec("mobilenetv2", 224)["small_input"] is False and spec("mobilenetv2_x0_5", 32)["small_input"] is True
    assert spec("resnet18", 64)["small_input"] is False
    assert spec("mobilenetv2", 224, small_input=True)["small_input"] is True  # the recipe's word wins
    assert "small_input" not in spec("resnet20", 224)


# --------------------------------------------------------------------------------------------- memory guard


def test_step_estimate_by_hand() -> None:
    # conv 3→8 saves its input (B·3·H·W floats), ReLU its output (B·8·H·W), linear the same storage (flatten view);
    # the largest output is the conv's/ReLU's B·8·H·W; the batch is counted 3 times; SGD: grads + momentum
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 10 * 10, 5))
    estimate = memory.estimate_step(net, (3, 10, 10), 4, teacher=None, optimizer="sgd")
    hw = 10 * 10
    assert estimate.per_sample == 4 * (3 * hw + 8 * hw) + 2 * 4 * 8 * hw + 3 * 4 * 3 * hw
    params = 8 * 3 * 9 + 8 + 800 * 5 + 5
    assert estimate.fixed == 2 * 4 * params + memory.KERNEL_OVERHEAD
    adam = memory.estimate_step(net, (3, 10, 10), 4, teacher=None, optimizer="adamw")
    assert adam.fixed - estimate.fixed == 4 * params


def test_guard_refuses_with_the_largest_batch_that_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd.models import create

    net = create("mobilenetv2_x0_5", small_input=False)
    one = memory.estimate_step(net, (3, 224, 224), 1, teacher=None, optimizer="sgd")
    budget = one.fixed * memory.SAFETY + 10.5 * one.per_sample * memory.SAFETY  # room for 10 samples
    monkeypatch.setenv(memory.MEMORY_LIMIT_ENV, str((memory.anonymous_resident() + budget) / MIB))
    with pytest.raises(UserError) as error:
        memory.check_step_fits(net, (3, 224, 224), 64, teacher=None, optimizer="sgd", label="teacher")
    message = str(error.value)
    assert "batch size 64 needs about" in message and "EDGEKD_MEMORY_LIMIT_MB" in message
    fits = int(message.rsplit("set train.batch_size to ", 1)[1].split()[0])
    assert fits in (9, 10)  # 10 by the arithmetic above, less what the resident memory grew meanwhile
    record = memory.check_step_fits(net, (3, 224, 224), fits - 1, teacher=None, optimizer="sgd", label="teacher")
    assert record["largest_batch"] >= fits - 1 and record["estimate_mib"] > 0


def test_a_batch_that_cannot_fit_exits_2_before_training(tmp_path: Path) -> None:
    result = run_cli("run", str(ROOT / "pipelines" / "quickstart.yaml"), "--device", "x86-cpu", "--out",
                     str(tmp_path / "run"), "--smoke", env={memory.MEMORY_LIMIT_ENV: "1"})
    assert result.returncode == 2, result.stderr
    assert "teacher: one training step at batch size 64 needs about" in result.stderr
    assert "even one sample does not fit" in result.stderr and "Traceback" not in result.stderr
    assert not list((tmp_path / "run").rglob("last.pt"))  # no epoch was trained


@pytest.mark.slow
def test_data_larger_than_the_memory_limit_trains_within_it(tmp_path: Path, home: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """3,000 images at 128 px: 563 MiB as float32, more than the 450 MiB the process may grow by; it trains, and
    its peak resident memory, less the reclaimable pages of the mapped uint8 file, grows by less than that."""
    from PIL import Image

    rng = np.random.default_rng(3)
    for i in range(3000):
        folder = tmp_path / "big" / "train" / f"c{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    allowance = 450 * MIB
    try:
        Path("/proc/self/clear_refs").write_text("5")  # peak resident memory := current
    except OSError:
        pytest.skip("cannot reset VmHWM here")
    before, file_before = _vm("VmRSS"), _vm("RssFile")
    monkeypatch.setenv(memory.MEMORY_LIMIT_ENV, str((memory.anonymous_resident() + allowance) / MIB))
    data = load_dataset("image-folder", {"root": tmp_path / "big", "image_size": 128}, val_fraction=0.1)
    float_bytes = sum(part.x.nbytes for part in (data.train, data.val, data.test))
    assert float_bytes > allowance * 1.2
    from edgekd.models import create

    config = TrainConfig(epochs=1, batch_size=16, lr=0.01)
    result = Trainer(create("plain2", num_classes=4), data, config, tmp_path / "work", label="big").fit()
    assert result.memory is not None and result.memory["largest_batch"] >= 16
    mapped = _vm("RssFile") - file_before  # pages of the memory-mapped uint8 images: page cache, reclaimable
    assert mapped < float_bytes / 2 and _vm("VmHWM") - before - mapped < allowance


# ------------------------------------------------------------------------------------------ the 224 px recipe


@pytest.mark.slow
@pytest.mark.fmnist
@pytest.mark.skipif(not FMNIST_DIR.is_dir(), reason="needs the Fashion-MNIST IDX files")
def test_imagefolder_224_smoke(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_imagefolder.py"), "--out",
                    str(data_dir / "imagefolder-224"), "--images", "300"], check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert len(list((data_dir / "imagefolder-224").rglob("*.jpg"))) == 300
    run_dir = tmp_path / "run"
    result = run_cli("run", str(ROOT / "pipelines" / "imagefolder-224.yaml"), "--device", "x86-cpu", "--data-dir",
                     str(data_dir), "--out", str(run_dir), "--smoke", env={"HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr
    manifest = json.loads((run_dir / "manifest.json").read_text())
    artifacts = {a["name"]: a for a in manifest["artifacts"]}
    for name in ("teacher", "student"):
        assert artifacts[name]["info"]["model"]["kwargs"]["small_input"] is False  # ImageNet layout at 224 px
        assert artifacts[name]["input"]["shape"][1:] == [3, 224, 224]
    assert "ImageNet layout" in result.stderr
    teacher_info = next(s for s in manifest["stages"] if s["name"] == "train-teacher")["info"]
    assert teacher_info["memory"]["batch_size"] == 32 and teacher_info["memory"]["estimate_mib"] > 0
