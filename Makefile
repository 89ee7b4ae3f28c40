# One entry point for people and CI. `make demo` and `make test` are the
# README's quickstart; `.ci/run` runs `make test` from a clean checkout.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-all lint bench node-tools browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[export,openclip,dev]'
	touch $(STAMP)

setup: $(STAMP) node-tools

# Khronos glTF validator, glTF-Transform and model-viewer (served by Shoplens itself).
node-tools:
	bash scripts/install-node-tools.sh

# Debian chromium + chromedriver for the headless browser tests (needs root/apt).
browser:
	bash scripts/install-browser.sh

demo: setup
	$(BIN)/shoplens demo

test: setup
	$(BIN)/python -m pytest

test-all: setup
	$(BIN)/python -m pytest -m ''

lint: $(STAMP)
	$(BIN)/ruff check shoplens tests benchmarks scripts
	$(BIN)/ruff format --check shoplens tests benchmarks scripts
	$(BIN)/mypy
