# `make demo` and `make test` do all set-up on a fresh machine (Python 3.11), then run.
# The virtualenv lives in .venv; a stamp file makes repeated runs skip the install.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# CPU build of torch; a loose `torch` would pull several GB of CUDA wheels.
TORCH := torch==2.13.0

.PHONY: demo test test-fast test-slow lint setup sysdeps test-sysdeps clean gpu-check
# Debian packages the built-in datasets are made from (skipped where apt-get is missing):
# fonts for `glyphs` and the captioned scenes, `fortunes` for the English text corpus,
# `espeak-ng` for the spoken-digits audio set.
SYSDEPS := fonts-dejavu-core fonts-liberation fonts-freefont-ttf fonts-noto-core fonts-urw-base35 \
	fortunes espeak-ng
# Only the tests need these (the browser test of the web page).
TEST_SYSDEPS := chromium chromium-driver

setup: $(STAMP) sysdeps

define apt_install
	@dpkg -s $(1) >/dev/null 2>&1 || ! command -v apt-get >/dev/null || \
		(apt-get install -y -q $(1) >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null && apt-get install -y -q $(1) >/dev/null)) || \
		echo "note: could not install $(1); the built-in datasets that need them are unavailable"
endef

sysdeps:
	$(call apt_install,$(SYSDEPS))

test-sysdeps:
	$(call apt_install,$(TEST_SYSDEPS))

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install $(TORCH)
	$(BIN)/pip install -e ".[dev,diffusers]"
	touch $(STAMP)

demo: $(STAMP) sysdeps
	$(BIN)/diffusionforge demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-fast: $(STAMP) sysdeps test-sysdeps
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP) sysdeps test-sysdeps
	$(BIN)/python -m pytest -q -m slow

test: lint test-fast test-slow

# On a CUDA machine: device tests, bf16 training, CPU-vs-GPU sampling, throughput; writes
# runs/gpu-check/report.{json,md} within ~10 minutes. Without CUDA: one line, exit 0.
# (The CPU wheel above has no CUDA: install a CUDA build of $(TORCH) in $(VENV) first.)
gpu-check: $(STAMP) sysdeps
	$(BIN)/python benchmarks/gpu_check.py

clean:
	rm -rf runs build *.egg-info .pytest_cache .ruff_cache
