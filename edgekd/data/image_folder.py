"""``image-folder``: a tree of image files, one sub-folder per class, like torchvision's ``ImageFolder``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from edgekd.data.builtin import CarvedTestParams, carve_test, resolve_user_path
from edgekd.data.bundle import RawData, Split, split_from_arrays
from edgekd.data.registry import DATASETS
from edgekd.errors import UserError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


class ImageFolderParams(CarvedTestParams):
    """Parameters of the ``image-folder`` data set (``test_fraction`` applies only when there is no ``test/``)."""

    root: Path = Field(description="folder holding train/<class>/<image> and optionally test/<class>/<image>")
    image_size: int = Field(32, ge=1, le=4096, description="every image is resized to image_size x image_size")
    grayscale: bool = Field(False, description="read images as 1 grey channel instead of 3 RGB channels")


def _class_folders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _read_images(folder: Path, classes: list[str], params: ImageFolderParams) -> Split:
    """Every image under ``folder/<class>/``, resized with Pillow (bilinear), labelled by its class's index."""
    from PIL import Image, UnidentifiedImageError

    mode = "L" if params.grayscale else "RGB"
    size = (params.image_size, params.image_size)
    images: list[np.ndarray] = []
    labels: list[int] = []
    for class_folder in _class_folders(folder):
        if class_folder.name not in classes:
            raise UserError(f"{class_folder}: class {class_folder.name!r} is not among the train classes {classes}")
        files = sorted(p for p in class_folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for file in files:
            try:
                with Image.open(file) as image:
                    pixels = image.convert(mode).resize(size, Image.Resampling.BILINEAR)
            except (OSError, UnidentifiedImageError) as error:
                raise UserError(f"{file}: cannot read the image ({error})") from None
            images.append(np.asarray(pixels, dtype=np.uint8).reshape(size[1], size[0], -1))
            labels.append(classes.index(class_folder.name))
    channels = 1 if params.grayscale else 3
    x = np.stack(images) if images else np.zeros((0, size[1], size[0], channels), dtype=np.uint8)
    return split_from_arrays(x.transpose(0, 3, 1, 2), np.asarray(labels, dtype=np.int64), what=str(folder))


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
