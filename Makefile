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

# Real OpenStack Glance (installed on first use into ~/.cache/image-transfer/interop/) against the emulator and engine.
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

# The OpenStack clients (python-glanceclient, openstacksdk, python-openstackclient) in their own
# environment, ~/.cache/image-transfer/interop/clients-venv (built on first use by tests/ecosystem and the benchmark too).
.PHONY: clients ecosystem
clients: $(STAMP)
	$(BIN)/python -m interop.clients

# The clients' scripted tours against `image-transfer emulator` (Keystone v2.0 and v3).
ecosystem: $(STAMP)
	$(BIN)/python -m pytest -q tests/ecosystem

# Benchmarks (see benchmarks/README.md).  `bench` builds the clients' environment first: its
# python-glanceclient is the operators' baseline (without it the baseline falls back to curl).
.PHONY: bench bench-quick

BENCH_STAMP := $(VENV)/.installed-bench

# matplotlib (the bench extra) draws benchmarks/scaling.png; nothing else needs it.
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	-$(BIN)/python -m interop.clients
	$(BIN)/python -m benchmarks

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks --quick

# The man page, generated from the parser (argparse-manpage); a test fails when it is stale.
.PHONY: man
man: $(STAMP)
	$(BIN)/python -m transfer.cli.manpage docs/image-transfer.1

# Debian's Chromium (and its driver), for the live page's browser tests (tests/web): playwright
# drives this system browser and never downloads one. CI runs it before the tests.
.PHONY: browser
SUDO ?= $(if $(filter 0,$(shell id -u)),,sudo)
browser:
	test -x /usr/bin/chromium || { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium chromium-driver; }
