"""``mnist`` and ``fashion-mnist``: the four standard IDX files, found locally or downloaded, verified by MD5."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from pydantic import Field

from edgekd.data._idx import IDX_STEMS, IdxSpec, fetch_idx, parse_idx
from edgekd.data.bundle import RawData, split_from_arrays, split_stratified
from edgekd.data.registry import DATASETS, DatasetParams
from edgekd.errors import UserError

_GET_FILES = "put the four IDX files (" + ", ".join(f"{s}.gz" for s in IDX_STEMS) + ") in --data-dir"

IDX_SPECS: dict[str, IdxSpec] = {
    "fashion-mnist": IdxSpec(
        name="fashion-mnist",
        # MD5 of the uncompressed files, as published by Zalando (the .gz sums in REFERENCES.md §5 identify only the
        # original archives; Debian's re-compressed copies hold the same bytes).
        md5={
            "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
            "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
            "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
        },
        default_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        class_names=(
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
        ),
        hint=f"apt-get install dataset-fashion-mnist, or {_GET_FILES}",
        citation="Xiao, Rasul & Vollgraf, Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning "
        "Algorithms, arXiv:1708.07747, 2017",
    ),
    "mnist": IdxSpec(
        name="mnist",
        md5={
            "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
            "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
        },
        default_url="https://ossci-datasets.s3.amazonaws.com/mnist/",
        class_names=tuple(str(digit) for digit in range(10)),
        hint=_GET_FILES,
        citation="LeCun, Bottou, Bengio & Haffner, Gradient-Based Learning Applied to Document Recognition, "
        "Proc. IEEE 86(11), 1998",
    ),
}
"""The IDX data sets, looked up at load time (tests swap in specs for tiny files)."""


class IdxParams(DatasetParams):
    """Parameters of the IDX data sets."""

    url: str | None = Field(
        None, description="base URL to download the .gz files from (default: $EDGEKD_DATA_URL, else the official site)"
    )
    limit_train: int | None = Field(
        None, ge=1, description="use only this many training images (stratified subset seeded by the recipe seed)"
    )


def load_idx(name: str, params: IdxParams, *, data_dir: Path | None, seed: int) -> RawData:
    """Data set ``name`` of :data:`IDX_SPECS`: 8-bit images scaled by 1/255, labels checked against the classes."""
    spec = IDX_SPECS[name]
    contents, folder = fetch_idx(spec, data_dir, params.url)
    splits = []
    for part in ("train", "t10k"):
        images_stem, labels_stem = f"{part}-images-idx3-ubyte", f"{part}-labels-idx1-ubyte"
        images = parse_idx(contents[images_stem], what=str(folder / images_stem))
        labels = parse_idx(contents[labels_stem], what=str(folder / labels_stem))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise UserError(
                f"data set {name!r} in {folder}: {part} images {images.shape} and labels {labels.shape} do not match "
                "(expected N x H x W images and N labels)"
            )
        splits.append(split_from_arrays(images[:, None], labels, what=f"data set {name!r} in {folder}: {part}"))
    train, test = splits
    if params.limit_train is not None and params.limit_train < len(train):
        held_out = len(train) - params.limit_train
        train, _ = split_stratified(train, held_out, seed, what=f"data set {name!r}: limit_train")
    return RawData(train, test, spec.class_names, str(folder))


for _spec in IDX_SPECS.values():
    DATASETS.add(
        _spec.name,
        partial(load_idx, _spec.name),
        params=IdxParams,
        description=f"{_spec.name}: 28x28 grey images, 10 classes, 60000 train / 10000 test (IDX files)",
        citation=_spec.citation,
    )
