# Two commands for users (see README): `make quickstart` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
BIN := $(VENV)/bin

.PHONY: setup quickstart test clean

$(BIN)/edgekd: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

setup: $(BIN)/edgekd

quickstart: setup
	$(BIN)/edgekd run pipelines/quickstart.yaml --device x86-cpu --out runs/quickstart

test: setup
	$(BIN)/ruff check edgekd tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs
