"""Typed schemas of recipes and device profiles; loading, overrides and friendly errors."""

from edgekd.config.device import Budgets, Device, RuntimeTarget
from edgekd.config.execution import ExecutionConfig
from edgekd.config.loader import available_devices, available_recipes, load_device, load_recipe
from edgekd.config.recipe import (
    BenchConfig,
    DataConfig,
    DistillConfig,
    ExportConfig,
    ModelRef,
    Recipe,
    SelectConfig,
)
from edgekd.config.training import LossTerm, TrainConfig

__all__ = [
    "BenchConfig",
    "Budgets",
    "DataConfig",
    "Device",
    "DistillConfig",
    "ExecutionConfig",
    "ExportConfig",
    "LossTerm",
    "ModelRef",
    "Recipe",
    "RuntimeTarget",
    "SelectConfig",
    "TrainConfig",
    "available_devices",
    "available_recipes",
    "load_device",
    "load_recipe",
]
