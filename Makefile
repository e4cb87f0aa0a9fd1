# `make demo` and `make test` do all set-up on a fresh machine (Python 3.11), then run.
# The virtualenv lives in .venv; a stamp file makes repeated runs skip the install.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# CPU build of torch; a loose `torch` would pull several GB of CUDA wheels.
TORCH := torch==2.13.0

.PHONY: demo test test-fast test-slow lint setup clean

setup: $(STAMP)

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install $(TORCH)
	$(BIN)/pip install -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/diffusionforge demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

test: lint test-fast test-slow

clean:
	rm -rf runs build *.egg-info .pytest_cache .ruff_cache
