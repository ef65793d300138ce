"""Recipes resolve by name like device profiles: ./pipelines first, then the recipes bundled in the wheel."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edgekd.config import available_recipes, load_recipe
from edgekd.config.loader import bundled_dir, resolve_recipe_path
from edgekd.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.stem for p in (ROOT / "pipelines").glob("*.yaml"))


def recipe_rows(table: str) -> dict[str, list[str]]:
    """`edgekd zoo recipes` as name → [path, description]; a long cell wraps onto lines whose name cell is empty."""
    rows: dict[str, list[str]] = {}
    last = ""
    for line in table.splitlines():
        if "│" not in line:
            continue
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells[0]:
            last, rows[cells[0]] = cells[0], cells[1:]
        else:
            rows[last] = [rows[last][0] + cells[1], (rows[last][1] + " " + cells[2]).strip()]
    return rows


def test_a_name_resolves_to_the_bundled_recipe_from_an_empty_folder(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert sorted(available_recipes()) == SHIPPED
    assert resolve_recipe_path("quickstart") == bundled_dir("pipelines") / "quickstart.yaml"
    assert load_recipe("quickstart").name == "quickstart"


def test_local_pipelines_folder_wins_over_the_bundled_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pipelines").mkdir()
    mine = tmp_path / "pipelines" / "quickstart.yaml"
    mine.write_text((ROOT / "pipelines" / "quickstart.yaml").read_text().replace("name: quickstart", "name: mine"))
    (tmp_path / "pipelines" / "extra.yaml").write_text("name: extra\ndescription: only here\n")
    monkeypatch.chdir(tmp_path)
    assert resolve_recipe_path("quickstart").resolve() == mine.resolve()
    assert load_recipe("quickstart").name == "mine"
    assert sorted(available_recipes()) == sorted({*SHIPPED, "extra"})


def test_paths_are_taken_as_given_and_unknown_names_are_one_line(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"^missing\.yaml: file not found$"):
        resolve_recipe_path("missing.yaml")
    with pytest.raises(UserError, match="unknown recipe 'quickstar'; did you mean 'quickstart'"):
        resolve_recipe_path("quickstar")
    local = tmp_path / "quickstart"  # an existing file is a path even without a .yaml suffix
    local.write_text("name: local-file\n")
    assert resolve_recipe_path("quickstart") == Path("quickstart")


def test_zoo_recipes_lists_name_path_and_description(tmp_path: Path) -> None:
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "zz-mine.yaml").write_text("name: zz\ndescription: a recipe of my own\n")
    result = subprocess.run([sys.executable, "-m", "edgekd", "zoo", "recipes"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "COLUMNS": "400"})
    assert result.returncode == 0, result.stderr
    rows = recipe_rows(result.stdout)
    assert rows["zz-mine"] == ["pipelines/zz-mine.yaml", "a recipe of my own"]  # named as the user would
    assert {*SHIPPED, "zz-mine"} <= set(rows)


@pytest.mark.slow
def test_recipe_names_work_from_a_built_wheel_in_an_empty_folder(tmp_path: Path) -> None:
    """Build the wheel, unpack it, and run edgekd from it (not from this checkout) in a folder with no pipelines/."""
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", *isolation,
                            "-w", str(tmp_path / "whl")], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "whl").glob("edgekd-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "400"}
    probe = subprocess.run(
        [sys.executable, "-c", "import edgekd, json; from edgekd.config.loader import available_recipes, "
         "resolve_recipe_path; print(json.dumps([edgekd.__file__, str(resolve_recipe_path('quickstart')), "
         "sorted(available_recipes())]))"],
        cwd=empty, env=env, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    package, quickstart, names = json.loads(probe.stdout)
    assert Path(package).parent == site / "edgekd"
    assert Path(quickstart) == site / "edgekd" / "_bundled" / "pipelines" / "quickstart.yaml"
    assert names == SHIPPED
    validated = subprocess.run([sys.executable, "-m", "edgekd", "validate", "quickstart", "--device", "x86-cpu"],
                               cwd=empty, env=env, capture_output=True, text=True, timeout=300)
    assert validated.returncode == 0, validated.stderr
    assert "quickstart on x86-cpu: recipe and device profile are valid." in validated.stdout
    listed = subprocess.run([sys.executable, "-m", "edgekd", "zoo", "recipes"], cwd=empty, env=env,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert recipe_rows(listed.stdout)["quickstart"][0] == quickstart
