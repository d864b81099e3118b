# The two set-up commands (`make demo`, `make test`) create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint fmt emulator clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/image-transfer demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check transfer tests benchmarks
	$(BIN)/ruff format --check transfer tests benchmarks
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format transfer tests benchmarks
	$(BIN)/ruff check --fix transfer tests benchmarks

emulator: $(STAMP)
	$(BIN)/image-transfer emulator

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
