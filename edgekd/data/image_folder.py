"""``image-folder``: a tree of image files, one sub-folder per class, like torchvision's ``ImageFolder``.

Images are decoded and resized once, into a uint8 NCHW ``.npy`` file in the cache folder (default
``~/.cache/edgekd/image-folder/<key>/``, written atomically) that training then reads memory-mapped, batch by batch:
memory follows the batch size, not the number of images. The key hashes the image size, the colour mode and every
file's path, size and modification time, so editing the folder makes a new cache; a finished cache is reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from pydantic import Field

from edgekd.data._idx import cache_dir
from edgekd.data.builtin import CarvedTestParams, carve_test, resolve_user_path
from edgekd.data.bundle import RawData, Split, split_from_store
from edgekd.data.images import open_store, write_store
from edgekd.data.registry import DATASETS
from edgekd.errors import UserError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
CACHE_FORMAT = 1
"""Bumped whenever the cache layout or the decoding changes."""
DECODE_CHUNK = 512
"""Images decoded (by a thread pool; Pillow releases the GIL while decoding) before they are written out."""


class ImageFolderParams(CarvedTestParams):
    """Parameters of the ``image-folder`` data set (``test_fraction`` applies only when there is no ``test/``)."""

    root: Path = Field(description="folder holding train/<class>/<image> and optionally test/<class>/<image>")
    image_size: int = Field(32, ge=1, le=4096, description="every image is resized to image_size x image_size")
    grayscale: bool = Field(False, description="read images as 1 grey channel instead of 3 RGB channels")
    cache_dir: Path | None = Field(
        None, description="where the decoded uint8 images are kept (default ~/.cache/edgekd/image-folder)"
    )


def _class_folders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _listing(folder: Path, classes: list[str]) -> tuple[list[Path], np.ndarray]:
    """Every image file under ``folder/<class>/`` (sorted by class, then name) and its class index."""
    files: list[Path] = []
    labels: list[int] = []
    for class_folder in _class_folders(folder):
        if class_folder.name not in classes:
            raise UserError(f"{class_folder}: class {class_folder.name!r} is not among the train classes {classes}")
        found = sorted(p for p in class_folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        files += found
        labels += [classes.index(class_folder.name)] * len(found)
    return files, np.asarray(labels, dtype=np.int64)


def _cache_key(folder: Path, files: list[Path], labels: np.ndarray, params: ImageFolderParams) -> str:
    """SHA-256 of what the decoded array depends on: format, size, mode, and each file's path, size, mtime, label."""
    digest = hashlib.sha256(json.dumps({"format": CACHE_FORMAT, "size": params.image_size,
                                        "grayscale": params.grayscale, "folder": str(folder.resolve())}).encode())
    for file, label in zip(files, labels.tolist()):
        stat = file.stat()
        digest.update(f"{file.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\0{label}\n".encode())
    return digest.hexdigest()


def _decode(file: Path, mode: str, size: int) -> np.ndarray:
    """One image as ``(C, size, size)`` uint8, resized with Pillow (bilinear)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as image:
            pixels = image.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
    except (OSError, UnidentifiedImageError) as error:
        raise UserError(f"{file}: cannot read the image ({error})") from None
    return np.asarray(pixels, dtype=np.uint8).reshape(size, size, -1).transpose(2, 0, 1)


def _read_images(folder: Path, classes: list[str], params: ImageFolderParams) -> Split:
    """Every image under ``folder/<class>/``, labelled by its class's index, from the decoded cache (made once)."""
    files, labels = _listing(folder, classes)
    key = _cache_key(folder, files, labels, params)
    store = (params.cache_dir or cache_dir("image-folder")) / key / "images.npy"
    if not store.is_file():
        channels, size = (1 if params.grayscale else 3), params.image_size
        log.info("decoding %d images of %s into %s", len(files), folder, store)
        mode = "L" if params.grayscale else "RGB"
        with write_store(store, (len(files), channels, size, size), np.uint8) as out, ThreadPoolExecutor() as pool:
            for start in range(0, len(files), DECODE_CHUNK):
                chunk = files[start : start + DECODE_CHUNK]
                for offset, pixels in enumerate(pool.map(lambda f: _decode(f, mode, size), chunk)):
                    out[start + offset] = pixels
    return split_from_store(open_store(store), labels)


@DATASETS.register(
    "image-folder",
    params=ImageFolderParams,
    description="your images: root/train/<class>/*.png|jpg|... (and root/test/<class>/...; else test is carved)",
    citation=None,
)
def load_image_folder(params: ImageFolderParams, *, data_dir: Path | None, seed: int) -> RawData:
    """Images from ``root/train`` (and ``root/test``); class names are the sorted train sub-folder names."""
    root = resolve_user_path(params.root, data_dir, key="root")
    train_dir, test_dir = root / "train", root / "test"
    if not train_dir.is_dir():
        raise UserError(f"data.params.root: {root} has no train/ folder (expected train/<class>/<image files>)")
    classes = [p.name for p in _class_folders(train_dir)]
    if not classes:
        raise UserError(f"data.params.root: {train_dir} has no class sub-folders (expected train/<class>/<images>)")
    train = _read_images(train_dir, classes, params)
    present = {classes[i] for i in train.y.unique().tolist()}
    empty = [name for name in classes if name not in present]
    if empty:
        raise UserError(f"data.params.root: {train_dir}: class folder(s) without images: {', '.join(empty)}")
    if test_dir.is_dir():
        test = _read_images(test_dir, classes, params)
    else:
        train, test = carve_test(train, params.test_fraction, "image-folder")
    return RawData(train, test, tuple(classes), str(root))
