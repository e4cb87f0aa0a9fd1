# `make demo` and `make test` do all set-up on a fresh machine (Python 3.11), then run.
# The virtualenv lives in .venv; a stamp file makes repeated runs skip the install.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# CPU build of torch; a loose `torch` would pull several GB of CUDA wheels.
TORCH := torch==2.13.0

.PHONY: demo test test-fast test-slow lint setup fonts clean
# Fonts for the built-in `glyphs` dataset (Debian packages; skipped where apt-get is missing).
FONTS := fonts-dejavu-core fonts-liberation fonts-freefont-ttf fonts-noto-core fonts-urw-base35
FONT_MARK := /usr/share/fonts/truetype/liberation

setup: $(STAMP) fonts

fonts:
	@test -d $(FONT_MARK) || ! command -v apt-get >/dev/null || \
		(apt-get install -y -q $(FONTS) >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null && apt-get install -y -q $(FONTS) >/dev/null)) || \
		echo "note: could not install $(FONTS); the glyphs dataset needs fonts"

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install $(TORCH)
	$(BIN)/pip install -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP) fonts
	$(BIN)/diffusionforge demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-fast: $(STAMP) fonts
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

test: lint test-fast test-slow

clean:
	rm -rf runs build *.egg-info .pytest_cache .ruff_cache
