"""Every registered runtime provides every part its spec and capability rows declare, so a profile can never meet a
runtime edgekd builds but cannot measure (parametrised over the table: a new runtime package is checked for free)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

import pytest

from edgekd.capabilities import CAPABILITIES, FORMAT_SUFFIXES, RUNTIME_SPECS
from edgekd.runtime import RUNTIMES
from edgekd.runtimes import runtime_module

NAMES = list(RUNTIME_SPECS)


def _module(name: str, part: str) -> object:
    return importlib.import_module(runtime_module(name, part))


def _imported_packages(path: Path) -> set[str]:
    """Top-level packages a module imports anywhere (inside functions too), relative imports as ``.``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add(node.module.split(".")[0] if node.module and node.level == 0 else ".")
    return found


def test_the_table_has_every_runtime_package() -> None:
    packages = sorted(p.name for p in Path(importlib.import_module("edgekd.runtimes").__path__[0]).iterdir()
                      if p.is_dir() and (p / "spec.py").is_file())
    assert sorted(RUNTIME_SPECS) == packages and len(packages) >= 4


@pytest.mark.parametrize("name", NAMES)
def test_a_runtime_has_its_runner(name: str) -> None:
    spec = RUNTIME_SPECS[name]
    _module(name, "runner")
    entry = RUNTIMES.entry(name)
    assert entry.obj.name == name and entry.meta["formats"] == spec.formats
    assert set(spec.suffixes.values()) <= set(spec.formats) and spec.suffixes.items() <= FORMAT_SUFFIXES.items()


@pytest.mark.parametrize("name", NAMES)
def test_a_benchmarked_runtime_has_a_device_runner_session(name: str) -> None:
    """The bench stage measures every artifact in its own runtime, so every runtime with rows needs a session of
    the device runner's interface, importing nothing but the standard library, numpy and what its spec declares."""
    spec = RUNTIME_SPECS[name]
    assert any(row.runtime == name for row in CAPABILITIES)
    assert spec.session == runtime_module(name, "session"), f"{name}: no device-runner session declared"
    module = _module(name, "session")
    session = module.Session
    for method in ("input_shape", "prepare", "bind", "describe"):
        assert callable(getattr(session, method, None)), f"{name}: Session.{method} missing"
    assert list(inspect.signature(session).parameters)[:3] == ["path", "settings", "shape"]
    assert issubclass(module.LoadError, Exception)
    allowed = set(sys.stdlib_module_names) | {"numpy", spec.module, *spec.session_imports}
    imported = _imported_packages(Path(module.__file__))
    assert imported <= allowed, f"{name}: the session imports {sorted(imported - allowed)}"
    bench = _module(name, "bench")
    assert callable(bench.settings) and callable(bench.compute)


@pytest.mark.parametrize("name", NAMES)
def test_a_runtime_with_an_install_requirement_can_say_why_not(name: str) -> None:
    if not any(row.runtime == name and row.requires == "install" for row in CAPABILITIES):
        pytest.skip(f"{name}: no row requires an install check")
    why = _module(name, "requirement").unavailable()
    assert why is None or (isinstance(why, str) and "\n" not in why)


@pytest.mark.parametrize("name", NAMES)
def test_the_runtime_module_is_what_a_device_imports(name: str) -> None:
    spec = RUNTIME_SPECS[name]
    assert "." not in spec.module and spec.module.isidentifier()
    # the pre-flight's fix for a missing module: a command that installs it, naming the distribution
    assert spec.install.startswith("pip install ") and spec.install.split()[2].rstrip(",") in spec.libraries
    # provider packages only where a profile lists providers, each an alternative build of the same module
    assert not spec.provider_packages or "providers" in spec.profile_fields
    assert all(package.startswith(f"{spec.module}-") for package in spec.provider_packages.values())
    if importlib.util.find_spec(spec.module) is None:
        pytest.skip(f"{spec.module} is not installed here")


@pytest.mark.parametrize("name", NAMES)
def test_a_native_benchmark_tool_has_a_parser_checked_on_its_real_output(name: str) -> None:
    """A runtime whose package has a native benchmark tool parses its report; a fixture of the tool's real output
    (``tests/fixtures/bench/<tool>_*.txt``) is parsed into figures in ms."""
    from edgekd.runtimes import has_part

    if not has_part(name, "native"):
        pytest.skip(f"{name}: no native benchmark tool")
    native = _module(name, "native")
    fixtures = sorted((Path(__file__).parent / "fixtures" / "bench").glob(f"{native.TOOL}_*.txt"))
    assert fixtures, f"{name}: no fixture of {native.TOOL}'s output"
    for fixture in fixtures:
        report = native.parse(fixture.read_text())
        assert isinstance(report, dict) and report, fixture.name
    with pytest.raises(ValueError):
        native.parse("no report here")


@pytest.mark.parametrize("name", NAMES)
def test_the_builders_a_runtimes_rows_name_exist(name: str) -> None:
    """A row built by the export stage names exporters its package registers; a row built by the quantize stage
    needs the package's INT8 planners."""
    from edgekd.export.build import EXPORTERS

    rows = [row for row in CAPABILITIES if row.runtime == name]
    exported = [method for row in rows if row.built_by == "export" for method in row.methods]
    if exported:
        _module(name, "exporter")
        assert set(exported) <= set(EXPORTERS.names()), f"{name}: exporters {exported} not all registered"
    if any(row.built_by == "quantize" for row in rows):
        quantize = _module(name, "quantize")
        assert callable(quantize.plan) and callable(quantize.qat_plan)
