"""Data sets: a registry of loaders, stratified splits, and batch augmentation.

    bundle = load_dataset("fashion-mnist", {"limit_train": 5000}, data_dir=Path("data"), seed=0)
    bundle.train.x  # float32 NCHW in [0, 1];  bundle.train.y  # int64

Small data sets are held in memory as tensors; ``image-folder`` and ``npz`` stay on disk as memory-mapped uint8 (or
float32) arrays, read and converted batch by batch (:class:`~edgekd.data.images.ImageArray`).

Registered data sets: ``digits`` (scikit-learn), ``fashion-mnist`` and ``mnist`` (IDX files), ``image-folder``
(class sub-folders of images), ``npz`` (your arrays). Each declares its parameters as a pydantic model
(:func:`dataset_params_model`).
"""

from __future__ import annotations

from edgekd.data import builtin, idx, image_folder  # noqa: F401  (each module registers its data sets)
from edgekd.data.augment import augment_batch
from edgekd.data.bundle import DataBundle, Split
from edgekd.data.images import ImageArray
from edgekd.data.registry import DATASETS, dataset_params_model, load_dataset

__all__ = ["DATASETS", "DataBundle", "ImageArray", "Split", "augment_batch", "dataset_params_model", "load_dataset"]
