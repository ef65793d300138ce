"""Every YAML example in the README and the docs is a valid recipe, device profile or recipe section."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from edgekd.config import Device, Recipe

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [(page, i, block) for page in PAGES
          for i, block in enumerate(re.findall(r"^```yaml\n(.*?)^```", page.read_text(), re.M | re.S))]


def test_the_pages_have_examples() -> None:
    assert {p.name for p, _, _ in BLOCKS} >= {"README.md", "recipes.md", "devices.md", "quantization.md",
                                             "layermerge.md"}


@pytest.mark.parametrize(("page", "index", "block"), BLOCKS, ids=[f"{p.name}-{i}" for p, i, _ in BLOCKS])
def test_yaml_example_validates(page: Path, index: int, block: str) -> None:
    data = yaml.safe_load(block)
    if "runtimes" in data:
        Device.model_validate(data)
    elif "name" in data:
        Recipe.model_validate(data)
    else:  # one or more sections, shown on their own: valid when added to a whole recipe
        base = yaml.safe_load((ROOT / "pipelines" / "quickstart.yaml").read_text())
        Recipe.model_validate({**base, **data})


def test_readme_is_a_front_page_whose_links_resolve() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert "make test" in text and "make quickstart" in text  # .ci/run runs `make test`, the README's test command
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)
    assert targets, "the README links to the docs"
    for target in targets:
        assert (ROOT / target).is_file(), f"README.md links to {target}, which does not exist"
