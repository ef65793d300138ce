"""Data layer: registry and params, splits, IDX parsing / verification / download, npz, image folders, augmentation."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import socket
import struct
import threading
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import BaseModel

from edgekd.data import DATASETS, Split, _idx, augment_batch, dataset_params_model, load_dataset
from edgekd.data.idx import IDX_SPECS
from edgekd.errors import UserError

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
STEMS = _idx.IDX_STEMS
REAL_MNIST = IDX_SPECS["mnist"]


# ----------------------------------------------------------------------------------------------------- registry


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_data_set_declares_typed_params_description_and_citation(name: str) -> None:
    entry = DATASETS.entry(name)
    model = dataset_params_model(name)
    assert issubclass(model, BaseModel) and model.model_config.get("extra") == "forbid"
    assert all(field.description for field in model.model_fields.values())
    assert entry.meta["description"] and "citation" in entry.meta
    with pytest.raises(UserError, match=rf"data\.params\.bogus: unknown parameter of data set '{name}'"):
        load_dataset(name, {"bogus": 1})


def test_bad_names_and_values_are_one_line_user_errors() -> None:
    with pytest.raises(UserError, match="did you mean 'mnist'"):
        load_dataset("mnis")
    with pytest.raises(UserError, match=r"^data\.params\.test_fraction: .*number") as info:
        load_dataset("digits", {"test_fraction": "a lot"})
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match=r"data\.val_fraction"):
        load_dataset("digits", val_fraction=1.0)


# ------------------------------------------------------------------------------------------------ digits, Split


def _rows(x: torch.Tensor, y: torch.Tensor) -> list[tuple[int, ...]]:
    """Each sample as a tuple of integer grey levels (0..16) and its label, sorted: a multiset to compare."""
    levels = torch.round(x.reshape(len(x), -1) * 16).to(torch.int64)
    return sorted(tuple(row) + (int(label),) for row, label in zip(levels.tolist(), y.tolist()))


def test_digits_splits_partition_sklearn_data_stratified_and_seeded() -> None:
    from sklearn.datasets import load_digits

    bundle = load_dataset("digits", seed=0)
    parts = (bundle.train, bundle.val, bundle.test)
    assert [len(p) for p in parts] == [1293, 144, 360]  # 20 % of 1797 to test, then 10 % of 1437 to val (rounded up)
    for part in parts:
        assert part.x.dtype == torch.float32 and part.x.shape[1:] == (1, 8, 8) and part.y.dtype == torch.int64
        assert 0.0 <= float(part.x.min()) and float(part.x.max()) == 1.0
    assert (bundle.num_classes, bundle.in_channels, bundle.image_size, bundle.source) == (10, 1, (8, 8), "sklearn")

    digits = load_digits()
    everything = _rows(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]))
    assert everything == _rows(torch.as_tensor(digits.images / 16.0), torch.as_tensor(digits.target))

    for part, share in ((bundle.test, 0.2), (bundle.val, 0.1 * 0.8)):
        expected = np.bincount(digits.target) * share
        assert np.all(np.abs(np.bincount(part.y.numpy(), minlength=10) - expected) <= 1.5)

    flat = bundle.train.x.numpy().ravel()
    assert bundle.mean == pytest.approx((flat.mean(),), abs=1e-6) and bundle.std == pytest.approx((flat.std(),), 1e-5)

    again, other = load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    assert torch.equal(again.val.x, bundle.val.x) and torch.equal(again.train.y, bundle.train.y)
    assert torch.equal(other.test.x, bundle.test.x)  # test never depends on the recipe seed
    assert not torch.equal(other.val.x, bundle.val.x)


def test_split_subset_is_seeded_ordered_and_capped() -> None:
    split = Split(torch.arange(50, dtype=torch.float32).reshape(50, 1, 1, 1) / 50, torch.arange(50))
    small = split.subset(10, seed=3)
    assert len(small) == 10 and torch.equal(small.y, split.subset(10, seed=3).y)
    assert torch.equal(small.y, small.y.sort().values) and len(set(small.y.tolist())) == 10
    assert torch.equal(torch.round(small.x.flatten() * 50).long(), small.y)
    assert not torch.equal(small.y, split.subset(10, seed=4).y)
    assert split.subset(50, seed=0) is split and split.subset(99, seed=0) is split


# ---------------------------------------------------------------------------------------------------------- IDX


def _idx_bytes(array: np.ndarray) -> bytes:
    code = {np.dtype(np.uint8): 0x08, np.dtype(np.int16): 0x0B}[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.fixture
def tiny_idx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, np.ndarray]:
    """Tiny IDX arrays (3x4 images), with MNIST's expected sums swapped for theirs; no real data folder visible."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (20, 3, 4), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.tile(np.arange(10, dtype=np.uint8), 2),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (5, 3, 4), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.array([3, 1, 4, 1, 5], dtype=np.uint8),
    }
    sums = {stem: hashlib.md5(_idx_bytes(a)).hexdigest() for stem, a in arrays.items()}
    monkeypatch.setitem(IDX_SPECS, "mnist", replace(IDX_SPECS["mnist"], md5=sums))
    monkeypatch.setattr(_idx, "SYSTEM_DATA_DIR", tmp_path / "system")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    for variable in ("EDGEKD_DATA", "EDGEKD_DATA_URL"):
        monkeypatch.delenv(variable, raising=False)
    return arrays


def _write_idx(folder: Path, arrays: dict[str, np.ndarray], gz_stems: tuple[str, ...] = STEMS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        data = _idx_bytes(array)
        if stem in gz_stems:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)


def _assert_tiny(bundle, arrays: dict[str, np.ndarray]) -> None:
    assert bundle.image_size == (3, 4) and bundle.in_channels == 1 and bundle.class_names == tuple("0123456789")
    expected_test = torch.as_tensor(arrays["t10k-images-idx3-ubyte"][:, None] / 255.0, dtype=torch.float32)
    assert torch.equal(bundle.test.x, expected_test)
    assert bundle.test.y.tolist() == [3, 1, 4, 1, 5]
    expected_train = torch.as_tensor(arrays["train-images-idx3-ubyte"][:, None] / 255.0, dtype=torch.float32)
    assert torch.equal(torch.cat([bundle.train.x, bundle.val.x]).sort(0).values, expected_train.sort(0).values)


@pytest.mark.parametrize("nested", [True, False], ids=["data_dir/mnist", "data_dir"])
def test_idx_files_gz_and_raw_are_parsed_from_data_dir(tiny_idx, tmp_path: Path, nested: bool) -> None:
    folder = tmp_path / "data" / "mnist" if nested else tmp_path / "data"
    _write_idx(folder, tiny_idx, gz_stems=STEMS[:2])  # train gzipped, test raw
    bundle = load_dataset("mnist", data_dir=tmp_path / "data", val_fraction=0.5, seed=0)
    _assert_tiny(bundle, tiny_idx)
    assert bundle.source == str(folder) and sorted(bundle.val.y.tolist()) == list(range(10))


def test_idx_found_through_edgekd_data_env(tiny_idx, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_idx(tmp_path / "env" / "mnist", tiny_idx)
    monkeypatch.setenv("EDGEKD_DATA", str(tmp_path / "env"))
    _assert_tiny(load_dataset("mnist", val_fraction=0), tiny_idx)


def test_parse_idx_reads_big_endian_and_checks_the_header() -> None:
    values = np.array([[-2, 300, 7], [1, 0, -32768]], dtype=np.int16)
    assert np.array_equal(_idx.parse_idx(_idx_bytes(values), what="t"), values)
    with pytest.raises(UserError, match="not an IDX file"):
        _idx.parse_idx(b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", what="t")
    with pytest.raises(UserError, match="truncated or corrupt"):
        _idx.parse_idx(_idx_bytes(values)[:-1], what="t")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda raw: gzip.compress(raw[:-3]), "MD5"),
        (lambda raw: gzip.compress(b"\x01" + raw[1:]), "MD5"),
        (lambda raw: gzip.compress(raw)[:-12], "corrupt gzip"),
        (lambda raw: b"not gzip at all", "corrupt gzip"),
    ],
    ids=["truncated", "bad-magic", "truncated-gz", "not-gz"],
)
def test_corrupt_idx_file_is_a_user_error(tiny_idx, tmp_path: Path, damage, message: str) -> None:
    _write_idx(tmp_path, tiny_idx)
    target = tmp_path / "train-images-idx3-ubyte.gz"
    target.write_bytes(damage(_idx_bytes(tiny_idx[STEMS[0]])))
    with pytest.raises(UserError, match=message) as info:
        load_dataset("mnist", data_dir=tmp_path)
    assert str(target) in str(info.value) and "--data-dir" in str(info.value)


def test_real_checksums_reject_other_files(tiny_idx, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(IDX_SPECS, "mnist", REAL_MNIST)
    _write_idx(tmp_path, tiny_idx)
    with pytest.raises(UserError, match="expected 6bbc9ace898e44ae57da46a324031adb"):
        load_dataset("mnist", data_dir=tmp_path)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_missing_files_without_network_list_every_folder(tiny_idx, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEKD_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("EDGEKD_DATA_URL", f"http://127.0.0.1:{_closed_port()}/")
    _write_idx(tmp_path / "data", {STEMS[0]: tiny_idx[STEMS[0]]})  # one file of four is not enough
    with pytest.raises(UserError) as info:
        load_dataset("mnist", data_dir=tmp_path / "data")
    message = str(info.value)
    folders = ["data/mnist", "data", "env/mnist", "env", "system/mnist", "home/.cache/edgekd/mnist"]
    assert all(f"{tmp_path / folder}," in message or f"{tmp_path / folder} " in message for folder in folders)
    assert "mnist" in message and "127.0.0.1" in message and "--data-dir" in message and "\n" not in message


@pytest.fixture
def idx_server(tmp_path: Path):
    """An HTTP server on 127.0.0.1 serving ``tmp_path/served``; yields (base URL, list of requested paths)."""
    served, requested = tmp_path / "served", []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            requested.append(self.path)
            super().do_GET()

        def log_message(self, *args: object) -> None:
            return None

    served.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", served, requested
    server.shutdown()
    server.server_close()


def test_download_verifies_caches_and_reuses(tiny_idx, idx_server, tmp_path: Path) -> None:
    url, served, requested = idx_server
    _write_idx(served, tiny_idx)
    bundle = load_dataset("mnist", {"url": url}, data_dir=tmp_path / "empty", val_fraction=0)
    cache = tmp_path / "home" / ".cache" / "edgekd" / "mnist"
    _assert_tiny(bundle, tiny_idx)
    assert bundle.source == str(cache) and sorted(requested) == sorted(f"/{s}.gz" for s in STEMS)
    assert all((cache / f"{s}.gz").read_bytes() == (served / f"{s}.gz").read_bytes() for s in STEMS)
    requested.clear()
    _assert_tiny(load_dataset("mnist", {"url": url}, val_fraction=0), tiny_idx)
    assert requested == []


def test_download_of_a_wrong_file_is_rejected_and_not_cached(tiny_idx, idx_server, monkeypatch) -> None:
    url, served, requested = idx_server
    tampered = dict(tiny_idx, **{STEMS[1]: np.zeros(20, dtype=np.uint8)})
    _write_idx(served, tampered)
    monkeypatch.setenv("EDGEKD_DATA_URL", url)
    with pytest.raises(UserError, match=rf"downloaded {url}{STEMS[1]}\.gz: MD5"):
        load_dataset("mnist")
    cached = sorted(p.name for p in _idx.cache_dir("mnist").iterdir())
    assert cached == [f"{STEMS[0]}.gz"]
    _write_idx(served, tiny_idx)  # fixed upstream: only the three missing files are fetched
    requested.clear()
    _assert_tiny(load_dataset("mnist", val_fraction=0), tiny_idx)
    assert sorted(requested) == sorted(f"/{s}.gz" for s in STEMS[1:])


@pytest.mark.fmnist
@pytest.mark.skipif(
    not all((FMNIST_DIR / f"{s}.gz").exists() for s in STEMS),
    reason=f"Fashion-MNIST IDX files not in {FMNIST_DIR} (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEKD_DATA", raising=False)
    bundle = load_dataset("fashion-mnist", val_fraction=0)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (60000, 0, 10000)
    assert bundle.train.x.shape[1:] == (1, 28, 28) and bundle.class_names[0] == "T-shirt/top"
    assert torch.equal(bundle.test.y.bincount(), torch.full((10,), 1000))
    assert bundle.mean == pytest.approx((0.2860,), abs=1e-4) and bundle.std == pytest.approx((0.3530,), abs=1e-4)


# ---------------------------------------------------------------------------------------------- npz, image-folder


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private home folder: the decoded-image caches (~/.cache/edgekd/...) go under tmp_path."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_npz_layouts_scaling_and_class_names(tmp_path: Path, home: Path) -> None:
    rng = np.random.default_rng(1)
    x_train = rng.integers(0, 256, (30, 5, 6, 3), dtype=np.uint8)  # NHWC
    y_train = np.repeat(np.arange(3), 10)
    x_test = rng.random((4, 3, 5, 6)).astype(np.float32)  # NCHW floats
    np.savez(tmp_path / "mine.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=np.array([0, 1, 2, 2]),
             class_names=np.array(["ant", "bee", "cat"]))
    bundle = load_dataset("npz", {"path": "mine.npz"}, data_dir=tmp_path, val_fraction=0.2)
    assert (bundle.in_channels, bundle.image_size, bundle.class_names) == (3, (5, 6), ("ant", "bee", "cat"))
    assert torch.equal(bundle.test.x, torch.from_numpy(x_test)) and bundle.test.y.tolist() == [0, 1, 2, 2]
    expected = torch.from_numpy(x_train.transpose(0, 3, 1, 2) / 255.0).float()
    assert torch.equal(torch.cat([bundle.train.x, bundle.val.x]).sort(0).values, expected.sort(0).values)
    assert np.bincount(bundle.val.y.numpy()).tolist() == [2, 2, 2]
    assert bundle.mean == pytest.approx(tuple(bundle.train.x[:].mean(dim=(0, 2, 3)).tolist()), abs=1e-6)

    np.savez(tmp_path / "nhw.npz", x_train=x_train[..., 0], y_train=y_train, x_test=x_train[:2, ..., 0],
             y_test=np.array([0, 5]))
    grey = load_dataset("npz", {"path": tmp_path / "nhw.npz"}, val_fraction=0)
    assert grey.train.x.shape == (30, 1, 5, 6) and grey.class_names == tuple("012345")
    assert torch.equal(grey.test.x[1, 0], torch.from_numpy(x_train[1, ..., 0] / 255.0).float())
    np.savez(tmp_path / "bad.npz", x_train=x_test, y_train=np.array([0, 1, 2, 0]), x_test=x_test,
             y_test=np.array([0, 5, 1, 1]), class_names=np.array(["ant", "bee", "cat"]))
    with pytest.raises(UserError, match="test labels span 0..5 but there are 3 classes"):
        load_dataset("npz", {"path": tmp_path / "bad.npz"}, val_fraction=0)
    np.savez(tmp_path / "loud.npz", x_train=x_test * 2, y_train=y_train[:4], x_test=x_test, y_test=y_train[:4])
    with pytest.raises(UserError, match=r"float images must be in \[0, 1\], got 0.*\.\.1\.9"):
        load_dataset("npz", {"path": tmp_path / "loud.npz"})
    np.savez(tmp_path / "half.npz", x_train=x_test)
    with pytest.raises(UserError, match="missing array.*y_train, x_test, y_test"):
        load_dataset("npz", {"path": tmp_path / "half.npz"})
    with pytest.raises(UserError, match=r"data\.params\.path: .*absent\.npz not found"):
        load_dataset("npz", {"path": "absent.npz"}, data_dir=tmp_path)


def _png_tree(root: Path, colours: dict[str, list[tuple[int, int, int]]], size: tuple[int, int] = (7, 5)) -> None:
    from PIL import Image

    for class_name, class_colours in colours.items():
        (root / class_name).mkdir(parents=True)
        for i, colour in enumerate(class_colours):
            Image.new("RGB", size, colour).save(root / class_name / f"{i}.png")


def test_image_folder_resizes_labels_by_folder_and_carves_test(tmp_path: Path, home: Path) -> None:
    red, blue = [(200, 10, 30 + i) for i in range(10)], [(5, 40 + i, 250) for i in range(10)]
    _png_tree(tmp_path / "set" / "train", {"red": red, "blue": blue})
    bundle = load_dataset("image-folder", {"root": tmp_path / "set", "image_size": 4}, val_fraction=0.2)
    assert bundle.class_names == ("blue", "red") and bundle.train.x.shape[1:] == (3, 4, 4)
    assert [len(bundle.train), len(bundle.val), len(bundle.test)] == [12, 4, 4]
    everything = {(int(y), tuple(torch.round(x[:, 0, 0] * 255).int().tolist()))
                  for part in (bundle.train, bundle.val, bundle.test) for x, y in zip(part.x, part.y)}
    assert everything == {(1, c) for c in red} | {(0, c) for c in blue}  # uniform images stay uniform when resized
    assert all(torch.all(x == x[:, :1, :1]) for x in bundle.train.x)

    _png_tree(tmp_path / "set" / "test", {"red": red[:2]})
    grey = load_dataset("image-folder", {"root": tmp_path / "set", "image_size": 3, "grayscale": True}, val_fraction=0)
    assert grey.test.x.shape == (2, 1, 3, 3) and grey.test.y.tolist() == [1, 1] and len(grey.train) == 20
    luma = (200 * 299 + 10 * 587 + 30 * 114 + 500) // 1000  # ITU-R 601-2, Pillow's RGB -> L conversion
    assert int(torch.round(grey.test.x[0, 0, 0, 0] * 255)) == luma

    _png_tree(tmp_path / "set" / "test", {"green": [(0, 255, 0)]})
    with pytest.raises(UserError, match="class 'green' is not among the train classes"):
        load_dataset("image-folder", {"root": tmp_path / "set"})
    with pytest.raises(UserError, match="has no train/ folder"):
        load_dataset("image-folder", {"root": tmp_path})


# ---------------------------------------------------------------------------------------------------- augment


def test_crop_moves_content_by_at_most_the_padding() -> None:
    image = torch.zeros(1, 1, 9, 9)
    image[0, 0, 4, 4] = 1.0  # one bright pixel in the centre: never cropped out with padding 2
    batch = image.repeat(300, 1, 1, 1)
    out = augment_batch(batch, generator=torch.Generator().manual_seed(0), crop_padding=2)
    assert out.shape == batch.shape and torch.all(out.sum(dim=(1, 2, 3)) == 1)
    where = out[:, 0].flatten(1).argmax(1)
    shifts = {(int(i) // 9 - 4, int(i) % 9 - 4) for i in where}
    assert shifts == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}  # every shift within +-2, all seen


def test_crop_equals_a_window_of_the_zero_padded_image() -> None:
    x = torch.rand(16, 3, 6, 5)
    out = augment_batch(x, generator=torch.Generator().manual_seed(1), crop_padding=1)
    padded = F.pad(x, (1, 1, 1, 1))
    for i in range(len(x)):
        windows = [padded[i, :, dy:dy + 6, dx:dx + 5] for dy in range(3) for dx in range(3)]
        assert any(torch.equal(out[i], w) for w in windows)


def test_flip_mirrors_about_half_of_the_samples_and_is_reproducible() -> None:
    x = torch.rand(400, 2, 4, 4)
    out = augment_batch(x, generator=torch.Generator().manual_seed(2), hflip=True)
    flipped = torch.tensor([torch.equal(o, s.flip(-1)) for o, s in zip(out, x)])
    kept = torch.tensor([torch.equal(o, s) for o, s in zip(out, x)])
    assert torch.all(flipped ^ kept) and 160 < int(flipped.sum()) < 240
    assert torch.equal(out[0, 0, 0], x[0, 0, 0].flip(0) if flipped[0] else x[0, 0, 0])

    again = augment_batch(x, generator=torch.Generator().manual_seed(2), hflip=True)
    other = augment_batch(x, generator=torch.Generator().manual_seed(3), hflip=True)
    both = augment_batch(x, generator=torch.Generator().manual_seed(2), hflip=True, crop_padding=1)
    assert torch.equal(out, again) and not torch.equal(out, other)
    assert torch.equal(both, augment_batch(x, generator=torch.Generator().manual_seed(2), hflip=True, crop_padding=1))
    assert augment_batch(x, generator=torch.Generator()) is x


def _erased_boxes(out: torch.Tensor) -> list[tuple[int, int] | None]:
    """(height, width) of each image's erased region, read back from a batch that was -1 everywhere before erasing
    (noise in [0, 1] never equals -1); None for an image left alone. Asserts each region is one full rectangle."""
    boxes: list[tuple[int, int] | None] = []
    for image in out:
        changed = image != -1.0
        assert torch.equal(changed, changed[:1].expand_as(changed))  # the same pixels in every channel
        rows, cols = changed[0].any(1).nonzero().flatten(), changed[0].any(0).nonzero().flatten()
        if not len(rows):
            boxes.append(None)
            continue
        tall, wide = int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
        assert int(changed[0].sum()) == tall * wide  # a solid rectangle
        boxes.append((tall, wide))
    return boxes


def test_random_erasing_cuts_one_rectangle_within_the_papers_area_and_aspect_ranges() -> None:
    """Zhong et al. (AAAI 2020), Alg. 1: S_e / S ~ U(0.02, 0.4), r_e ~ U(0.3, 1/0.3), H_e = sqrt(S_e r_e),
    W_e = sqrt(S_e / r_e), random values inside, the rest untouched; each image with probability p."""
    x = torch.full((2000, 3, 28, 28), -1.0)
    out = augment_batch(x, generator=torch.Generator().manual_seed(4), erase_prob=1.0)
    boxes = _erased_boxes(out)
    assert all(box is not None for box in boxes)  # 28 x 28 always admits the first draw
    areas = torch.tensor([tall * wide / 784 for tall, wide in boxes])  # type: ignore[misc]
    aspects = torch.tensor([tall / wide for tall, wide in boxes])  # type: ignore[misc]
    # rounding each side to whole pixels moves the area and the aspect a little past the drawn ranges
    assert 0.01 <= float(areas.min()) < 0.03 and 0.37 < float(areas.max()) <= 0.45
    assert abs(float(areas.mean()) - 0.21) < 0.01  # the mean of U(0.02, 0.4)
    assert 0.25 <= float(aspects.min()) < 0.35 and 2.9 < float(aspects.max()) <= 4.0
    noise = out[out != -1.0]
    assert 0.0 <= float(noise.min()) and float(noise.max()) <= 1.0 and abs(float(noise.mean()) - 0.5) < 0.01

    half = _erased_boxes(augment_batch(x, generator=torch.Generator().manual_seed(5), erase_prob=0.5))
    assert 900 < sum(box is not None for box in half) < 1100


def test_random_erasing_is_seeded_and_leaves_earlier_draws_alone() -> None:
    x = torch.rand(64, 1, 12, 12)
    crop_flip = augment_batch(x, generator=torch.Generator().manual_seed(6), crop_padding=2, hflip=True)
    erased = augment_batch(x, generator=torch.Generator().manual_seed(6), crop_padding=2, hflip=True, erase_prob=1.0)
    again = augment_batch(x, generator=torch.Generator().manual_seed(6), crop_padding=2, hflip=True, erase_prob=1.0)
    assert torch.equal(erased, again) and not torch.equal(erased, crop_flip)
    # erasing comes after crop and flip and only overwrites: outside the erased boxes, the crop-and-flip batch
    kept = (erased == crop_flip).flatten(1).float().mean(1)
    assert float(kept.min()) >= 1 - 0.45 and float(kept.mean()) < 1 - 0.1
    with pytest.raises(ValueError, match="erase_prob"):
        augment_batch(x, generator=torch.Generator(), erase_prob=1.5)
