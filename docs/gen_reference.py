"""Generate the CLI reference (from the typer app) and the recipe and device-profile reference (from the pydantic
models), so neither is written by hand.

Used two ways: as an MkDocs hook (``hooks:`` in ``mkdocs.yml``), which adds ``reference/cli.md`` and
``reference/recipe.md`` to the site at build time, and as a script that writes the same pages to a folder::

    python docs/gen_reference.py --out /tmp/reference
"""

from __future__ import annotations

import argparse
import inspect
import json
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

PAGES = {"reference/cli.md": "cli_reference", "reference/recipe.md": "recipe_reference"}


def _cell(text: str) -> str:
    """Text for one table cell: pipes escaped, one line, and ``<``/``>`` outside code spans as entities (markdown
    would take ``<recipe>`` for an HTML tag)."""
    parts = text.replace("|", "\\|").replace("\n", " ").strip().split("`")
    return "`".join(p if i % 2 else p.replace("<", "&lt;").replace(">", "&gt;") for i, p in enumerate(parts))


# ---------------------------------------------------------------------------------------------------- command line

def cli_reference() -> str:
    """Markdown for every command of ``edgekd``: synopsis, description, arguments and options."""
    import typer

    from edgekd import cli

    group: Any = typer.main.get_command(cli.app)
    lines = ["# Command-line reference", "",
             "Generated from the typer app in `edgekd/cli.py` by `docs/gen_reference.py`; `edgekd COMMAND --help`",
             "prints the same.", "", _cell(group.help or ""), "", "## Exit codes", "",
             inspect.cleandoc(cli.__doc__ or "").split("\n\n", 1)[1].split(":", 1)[1].replace("\n", " ").strip(),
             ""]
    ctx = group.context_class(group, info_name="edgekd")
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        sub = command.context_class(command, info_name=name, parent=ctx)
        lines += [f"## `edgekd {name}`", "", "```", command.get_usage(sub).replace("Usage: ", ""), "```", "",
                  inspect.cleandoc(command.help or ""), ""]
        rows = [p.get_help_record(sub) for p in command.params]
        rows = [r for r in rows if r is not None]
        if rows:  # typer ships its own click: the rows are what `--help` prints, name and help with defaults
            lines += ["| argument / option | what it does |", "|---|---|"]
            lines += [f"| `{name}` | {_cell(help_text)} |" for name, help_text in rows]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------------------- recipes

def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation mentions (inside Optional, list, dict, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found += _models_in(arg)
    return found


def _type_name(annotation: Any) -> str:
    """A short, readable type: ``int``, ``list[float]``, ``'sgd' | 'adamw'``, a link for a nested section."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    if origin is typing.Literal:
        return " \\| ".join(f"`{a!r}`".replace("'", '"') for a in args)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args)
    if origin in (list, tuple, set):
        return f"list[{', '.join(_type_name(a) for a in args if a is not Ellipsis)}]"
    if origin is dict:
        return f"mapping[{_type_name(args[0])}, {_type_name(args[1])}]" if args else "mapping"
    if annotation is typing.Any:
        return "any"
    if isinstance(annotation, type):
        return {"Path": "path", "str": "text"}.get(annotation.__name__, annotation.__name__)
    return str(annotation).replace("typing.", "")


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        try:
            value = field.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return "(computed)"
    else:
        value = field.default
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        return "`{}` (all defaults)" if not value.model_fields_set else f"`{json.dumps(value.model_dump(mode='json'))}`"
    return f"`{json.dumps(to_jsonable_python(value), default=str)}`"


def _constraints(field: FieldInfo) -> str:
    parts = []
    for item in field.metadata:
        for attr, sign in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"), ("min_length", "min length"),
                           ("max_length", "max length")):
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(f"{sign} {value}")
    return f" ({', '.join(parts)})" if parts else ""


def _summary(model: type[BaseModel]) -> str:
    """The first paragraph of a model's docstring (none for a model without its own)."""
    if not model.__doc__ or model.__doc__ == BaseModel.__doc__:
        return ""
    return _cell(inspect.cleandoc(model.__doc__).split("\n\n")[0])


def _model_section(model: type[BaseModel]) -> list[str]:
    lines = [f"### {model.__name__}", "", _summary(model), "",
             "| key | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        key = field.alias or name
        nested = _models_in(field.annotation)
        description = field.description or (_summary(nested[0]) if nested else "")
        lines.append(f"| `{key}` | {_type_name(field.annotation)}{_constraints(field)} | {_cell(_default(field))} | "
                     f"{_cell(description)} |")
    return [*lines, ""]


def _walk(root: type[BaseModel]) -> list[type[BaseModel]]:
    """``root`` and every model reachable from its fields, depth first, each once."""
    order: list[type[BaseModel]] = []

    def visit(model: type[BaseModel]) -> None:
        if model in order:
            return
        order.append(model)
        for field in model.model_fields.values():
            for inner in _models_in(field.annotation):
                visit(inner)

    visit(root)
    return order


def recipe_reference() -> str:
    """Markdown for every key of a recipe and of a device profile, with type, default and description."""
    from edgekd.config import Device, Recipe

    lines = ["# Recipe and device-profile reference", "",
             "Generated from the pydantic models in `edgekd/config/` by `docs/gen_reference.py`. Unknown keys are",
             "errors; a section left out of a recipe is a stage skipped. Types link to the section that describes",
             "them.", "", "## Recipe", ""]
    for model in _walk(Recipe):
        lines += _model_section(model)
    lines += ["## Device profile", ""]
    seen = set(_walk(Recipe))
    for model in _walk(Device):
        if model not in seen:
            lines += _model_section(model)
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------------------------- MkDocs hook, script

def on_files(files: Any, config: Any) -> Any:
    """MkDocs hook: add the generated pages to the site."""
    from mkdocs.structure.files import File

    for path, builder in PAGES.items():
        files.append(File.generated(config, path, content=globals()[builder]()))
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description="write the generated reference pages to a folder")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    for path, builder in PAGES.items():
        target = args.out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(globals()[builder]())
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
