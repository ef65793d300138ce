"""The generated reference pages cover every command of the CLI and every key of a recipe and a device profile."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from edgekd.config import Device, Recipe

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("gen_reference", ROOT / "docs" / "gen_reference.py")
assert _spec is not None and _spec.loader is not None
gen_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen_reference)

# DESIGN.md's commands, and `zoo`'s views, written out here rather than read from the app
COMMANDS = ["run", "validate", "bench", "profile", "devices", "zoo", "report", "baseline", "check"]


def test_cli_reference_has_every_command_with_its_options() -> None:
    page = gen_reference.cli_reference()
    assert re.findall(r"^## `edgekd (\w+)`$", page, re.M) == COMMANDS
    run = page.split("## `edgekd run`")[1].split("\n## ")[0]
    for option in ("--device", "--out", "--data-dir", "--set", "--smoke", "--debug"):
        assert f"{option} " in run or f"`{option}`" in run, option
    assert "2 bad input" in page and "130 interrupted" in page


def test_recipe_reference_has_every_key_of_recipe_and_device() -> None:
    page = gen_reference.recipe_reference()
    recipe = page.split("### Recipe\n")[1].split("\n### ")[0]
    for key in ("name", "description", "seed", "data", "teacher", "student", "distill", "prune", "quantize", "export",
                "evaluate", "bench", "select", "report", "ablation"):
        assert f"| `{key}` |" in recipe, key
    for key in Recipe.model_fields:
        assert f"| `{key}` |" in recipe, key
    device = page.split("### Device\n")[1].split("\n### ")[0]
    for key in Device.model_fields:
        assert f"| `{key}` |" in device, key
    # nested sections are linked and present, with their defaults as YAML would write them
    assert "[TrainConfig](#trainconfig)" in page and "### TrainConfig" in page
    assert "| `latency_stat` | `\"p50\"` \\| `\"p90\"` \\| `\"p99\"` \\| `\"mean\"` | `\"p90\"` |" in page


def test_defaults_are_written_as_yaml_would_read_them() -> None:
    page = gen_reference.recipe_reference()
    assert "='" not in page and "': " not in page and "False" not in page  # no Python reprs
    losses = page.split("### DistillConfig\n")[1].split("\n### ")[0]
    assert '`[{"name": "kd", "weight": 1.0, "params": {"temperature": 4.0}' in losses
