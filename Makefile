# One entry point for people and CI. `make demo` and `make test` are the two commands in the
# README; everything else is reference.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first, explicitly, so pip never picks a multi-GB CUDA build by accident.
# For a CPU-only build elsewhere: make TORCH_INDEX=https://download.pytorch.org/whl/cpu env
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: demo test env data lint format protos clean

demo: data  ## synthesize -> train -> export -> serve -> localize a held-out image (5 min)
	$(BIN)/synthloc demo --out out/demo

env: $(VENV)/.installed $(VENV)/.kernel  ## create .venv and install synthloc with training and dev tools

# The compose kernel and synthloc's native helpers (C) are compiled at install; an editable install does not see later edits
# to its sources, so a change to them reinstalls (a few seconds).
KERNEL_SOURCES := $(wildcard synth_service/kernel/*.c synth_service/kernel/*.h synthloc/native/*.c)
$(VENV)/.kernel: $(KERNEL_SOURCES) | $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "synthloc needs Python >= 3.10"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e '.[dev,train]'
	touch $@ $(VENV)/.kernel

data: env  ## download mnfinder + stardist from PyPI once and convert them to COCO
	$(BIN)/synthloc data fetch all

test: env data lint $(BIN)/promtool  ## lint, then the whole test suite
	$(BIN)/python -m pytest

# promtool checks metric names in the tests; Debian's prometheus package ships it.
$(BIN)/promtool: | env
	cd $$(mktemp -d) && apt-get download prometheus >/dev/null && dpkg -x prometheus_*.deb x \
		&& cp x/usr/bin/promtool $(CURDIR)/$(BIN)/promtool

lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: env
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

protos: env  ## regenerate synthloc/v1 stubs from protos/ (commit the result)
	$(BIN)/python protos/generate.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
