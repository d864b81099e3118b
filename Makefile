# The two set-up commands (`make demo`, `make test`) create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint fmt emulator interop soak soak-workers clean

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
	$(BIN)/ruff check transfer tests benchmarks interop
	$(BIN)/ruff format --check transfer tests benchmarks interop
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format transfer tests benchmarks interop
	$(BIN)/ruff check --fix transfer tests benchmarks interop

emulator: $(STAMP)
	$(BIN)/image-transfer emulator

# Real OpenStack Glance (installed on first use into .interop/) against the emulator and engine.
interop: $(STAMP)
	$(BIN)/python -m pytest -q tests/interop

# The chaos soaks (short variants run in `make test`): the emulator's (SEED=N replays it), then
# real Glance behind fault proxies for SEEDS (10 seeds in a row; `--seed N` replays one).
SEED ?= 1
SEEDS ?= 1-10
soak: $(STAMP)
	$(BIN)/python -m tests.soak.driver --seed $(SEED)
	$(BIN)/python -m tests.interop.chaos --seeds $(SEEDS)

# The several-workers fault scenarios (tests/hosts) with eight seeds instead of one.
soak-workers: $(STAMP)
	IMAGE_TRANSFER_FAULT_SEEDS=1-8 $(BIN)/python -m pytest -q tests/hosts

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# Benchmarks (see benchmarks/README.md).  `bench` installs python-glanceclient, the operators'
# baseline, into its own venv on first use; without it the baseline falls back to curl.
GLANCE := benchmarks/.glance-venv/bin/glance
.PHONY: bench bench-quick

$(GLANCE):
	-$(PYTHON) -m venv benchmarks/.glance-venv && \
		benchmarks/.glance-venv/bin/python -m pip install --quiet python-glanceclient

bench: $(STAMP) $(GLANCE)
	$(BIN)/python -m benchmarks

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks --quick
