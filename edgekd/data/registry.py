"""The data set registry and its one factory, :func:`load_dataset`.

A data set registers a loader ``loader(params, *, data_dir, seed) -> RawData`` with metadata ``params`` (a pydantic
model with ``extra="forbid"`` declaring its parameters), ``description`` and ``citation``. :func:`load_dataset`
validates the parameters, calls the loader, carves the validation split from train (stratified, seeded by the recipe
seed) and computes the normalisation statistics on what is left of train. Model selection uses ``val``; ``test`` is
only for the final measurement.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from edgekd._registry import Registry
from edgekd.data.bundle import DataBundle, RawData, channel_stats, split_stratified
from edgekd.errors import UserError

Loader = Callable[..., RawData]

DATASETS: Registry[Loader] = Registry("data set")


class DatasetParams(BaseModel):
    """Base of every data set's parameter model: typed, defaults and descriptions declared once, no unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def dataset_params_model(name: str) -> type[BaseModel]:
    """The pydantic model declaring the parameters of data set ``name`` (UserError if the name is unknown)."""
    model: type[BaseModel] = DATASETS.entry(name).meta["params"]
    return model


def validate_params(name: str, params: dict[str, Any] | None) -> BaseModel:
    """``params`` validated against data set ``name``'s model; errors become one line ``data.params.<key>: <msg>``."""
    model = dataset_params_model(name)
    try:
        return model.model_validate(params or {})
    except ValidationError as error:
        problems = []
        for item in error.errors():
            key = ".".join(str(part) for part in ("data", "params", *item["loc"]))
            if item["type"] == "extra_forbidden":
                message = f"unknown parameter of data set {name!r}; allowed: {', '.join(sorted(model.model_fields))}"
            else:
                message = item["msg"]
            problems.append(f"{key}: {message}")
        raise UserError("; ".join(problems)) from None


def load_dataset(
    name: str,
    params: dict[str, Any] | None = None,
    *,
    data_dir: Path | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> DataBundle:
    """Load data set ``name`` with ``params`` into memory, with a stratified validation split carved from train.

    Args:
        name: a registered data set (``digits``, ``fashion-mnist``, ``mnist``, ``image-folder``, ``npz``).
        params: the data set's parameters (see :func:`dataset_params_model`).
        data_dir: a folder searched first for data files (the command line's ``--data-dir``).
        val_fraction: share of each class of train held out as the validation split, in [0, 1).
        seed: the recipe seed; the validation split (and any random train subset) depends on it, test never does.

    Raises:
        UserError: unknown name or parameter, data not found, corrupt or inconsistent data.
    """
    entry = DATASETS.entry(name)
    checked = validate_params(name, params)
    if not 0 <= val_fraction < 1:
        raise UserError(f"data.val_fraction: must be in [0, 1), got {val_fraction}")
    raw = entry.obj(checked, data_dir=Path(data_dir) if data_dir is not None else None, seed=seed)
    _check_consistent(name, raw)
    train, val = split_stratified(raw.train, val_fraction, seed, what=f"data set {name!r}: validation")
    mean, std = channel_stats(train.x)
    _, channels, height, width = train.x.shape
    return DataBundle(
        name=name,
        train=train,
        val=val,
        test=raw.test,
        num_classes=len(raw.class_names),
        in_channels=channels,
        image_size=(height, width),
        mean=mean,
        std=std,
        class_names=raw.class_names,
        source=raw.source,
    )


def _check_consistent(name: str, raw: RawData) -> None:
    """Train is not empty, train and test share one image shape, and every label names one of the classes."""
    if not len(raw.train):
        raise UserError(f"data set {name!r} ({raw.source}): no training images")
    if raw.train.x.shape[1:] != raw.test.x.shape[1:]:
        raise UserError(
            f"data set {name!r} ({raw.source}): train images are {tuple(raw.train.x.shape[1:])} (C, H, W) "
            f"but test images are {tuple(raw.test.x.shape[1:])}"
        )
    for split_name, split in (("train", raw.train), ("test", raw.test)):
        if len(split) and not 0 <= int(split.y.min()) <= int(split.y.max()) < len(raw.class_names):
            raise UserError(
                f"data set {name!r} ({raw.source}): {split_name} labels span {int(split.y.min())}..{int(split.y.max())}"
                f" but there are {len(raw.class_names)} classes"
            )
