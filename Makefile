# One entry point for people and CI. `make demo` and `make test` are the
# README's quickstart; `.ci/run` runs `make test` from a clean checkout.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Two installs into one venv, each with its stamp: `make demo` needs only the
# serving install (ONNX Runtime, FAISS, FastAPI; the default model ships in
# the package, so no torch); `make test` adds torch, timm, OpenCLIP and the
# test tools on top.
SERVE_STAMP := $(VENV)/.installed-serve
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: setup setup-serve demo test test-all lint bench node-tools browser

$(SERVE_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $(SERVE_STAMP)

$(DEV_STAMP): $(SERVE_STAMP)
	$(BIN)/python -m pip install -q -e '.[export,openclip,dev]'
	touch $(DEV_STAMP)

setup-serve: $(SERVE_STAMP) node-tools

setup: $(DEV_STAMP) node-tools

# Khronos glTF validator, glTF-Transform and model-viewer (served by Shoplens itself).
node-tools:
	bash scripts/install-node-tools.sh

# Debian chromium + chromedriver for the headless browser tests (needs root/apt).
browser:
	bash scripts/install-browser.sh

demo: setup-serve
	$(BIN)/shoplens demo

test: setup
	$(BIN)/python -m pytest

test-all: setup
	$(BIN)/python -m pytest -m ''

lint: $(DEV_STAMP)
	$(BIN)/ruff check shoplens tests benchmarks scripts
	$(BIN)/ruff format --check shoplens tests benchmarks scripts
	$(BIN)/mypy
