# Two commands for users (see README): `make quickstart` and `make test`. Both set everything up first.
# `make docs` regenerates docs/results.md from results/*.json and serves the site locally.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
# the optional back ends whose tests run in `make test` (Ray executor, LiteRT runtime)
EXTRAS ?= dev,ray,litert
BIN := $(VENV)/bin

.PHONY: setup quickstart test docs clean

$(BIN)/edgekd: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

setup: $(BIN)/edgekd

quickstart: setup
	$(BIN)/edgekd run pipelines/quickstart.yaml --device x86-cpu --out runs/quickstart

test: setup
	$(BIN)/ruff check edgekd tests benchmarks docs
	$(BIN)/mypy
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site
	$(BIN)/python -m pytest -q

docs: setup
	$(BIN)/python benchmarks/results_page.py
	$(BIN)/mkdocs serve

clean:
	rm -rf $(VENV) runs
