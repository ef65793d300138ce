"""Load recipes and device profiles: YAML (safe) → `--set` overrides → typed schema, with one-line errors."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from edgekd.config._errors import format_validation_error
from edgekd.config.device import Device
from edgekd.config.recipe import Recipe
from edgekd.errors import EdgekdError, UserError

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a YAML mapping with ``yaml.safe_load``; bad YAML names the file, line and column."""
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}{where}: bad YAML: {problem}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str], source: str) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (value parsed as YAML; list items by index) to a copy of ``data``."""
    result = yaml.safe_load(yaml.safe_dump(data))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected key.path=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise UserError(f"--set {item!r}: the value is not valid YAML") from None
        parts = key.split(".")
        node: Any = result
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise UserError(f"--set {item!r}: {'.'.join(parts[:i])} has no item {part} ({source})")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    if node.get(part) is None:
                        node[part] = {}
                    node = node[part]
            else:
                raise UserError(f"--set {item!r}: {'.'.join(parts[:i])} is a value, not a section ({source})")
    return result


def validate(model: type[M], data: dict[str, Any], source: str | Path) -> M:
    """Validate ``data`` against ``model``; errors become one-line UserErrors."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, model, source)) from None
    except EdgekdError as exc:
        raise UserError(f"{source}: {exc}") from None


def load_recipe(name_or_path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe given by path or by name (see :func:`resolve_recipe_path`)."""
    path = resolve_recipe_path(str(name_or_path))
    data = apply_overrides(read_yaml(path), overrides or [], str(path))
    return validate(Recipe, data, path)


def bundled_dir(kind: str) -> Path:
    """`devices/` or `pipelines/`: inside an installed wheel, else beside the package in a source checkout."""
    packaged = resources.files("edgekd") / "_bundled" / kind
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / kind


def _search_dirs(kind: str, env: str | None) -> list[Path]:
    """``./<kind>`` (kept relative, so a file found there is named as the user would), then ``$<env>`` when set, then
    the bundled folder; each existing folder once."""
    dirs = [Path(kind)]
    if env and (value := os.environ.get(env)):
        dirs.append(Path(value))
    dirs.append(bundled_dir(kind))
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def _available(dirs: list[Path]) -> dict[str, Path]:
    """File stem → YAML file; the first folder that has a stem wins."""
    found: dict[str, Path] = {}
    for folder in dirs:
        for file in sorted(folder.glob("*.yaml")):
            found.setdefault(file.stem, file)
    return found


def _resolve(name_or_path: str, known: dict[str, Path], what: str, option: str, missing: str) -> Path:
    """A path (anything ending in .yaml/.yml, or an existing file) as is; otherwise a name looked up in ``known``."""
    candidate = Path(name_or_path)
    if candidate.suffix in {".yaml", ".yml"} or candidate.is_file():
        if not candidate.is_file():
            raise UserError(f"{candidate}: {missing}")
        return candidate
    if name_or_path not in known:
        import difflib

        close = difflib.get_close_matches(name_or_path, known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UserError(f"{option}unknown {what} {name_or_path!r}; {hint}known: {', '.join(sorted(known)) or 'none'}")
    return known[name_or_path]


def device_search_dirs() -> list[Path]:
    """Where device names are looked up: ./devices, $EDGEKD_DEVICES, then the bundled profiles."""
    return _search_dirs("devices", "EDGEKD_DEVICES")


def available_devices() -> dict[str, Path]:
    """Profile name → file, first search folder wins."""
    return _available(device_search_dirs())


def resolve_device_path(name_or_path: str) -> Path:
    """A device profile file from a path or a profile name."""
    return _resolve(name_or_path, available_devices(), "device", "--device: ",
                    "device profile file not found")


def recipe_search_dirs() -> list[Path]:
    """Where recipe names are looked up: ./pipelines, then the recipes bundled with edgekd."""
    return _search_dirs("pipelines", None)


def available_recipes() -> dict[str, Path]:
    """Recipe name (file stem) → file, first search folder wins."""
    return _available(recipe_search_dirs())


def resolve_recipe_path(name_or_path: str) -> Path:
    """A recipe file from a path or a recipe name (``quickstart`` → ``./pipelines/quickstart.yaml`` or the bundled
    one)."""
    return _resolve(name_or_path, available_recipes(), "recipe", "", "file not found")


def load_device(name_or_path: str) -> Device:
    """Read and validate a device profile given by name or path."""
    path = resolve_device_path(name_or_path)
    return validate(Device, read_yaml(path), path)
