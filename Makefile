# mantis — run `make help` for the targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
RUN ?= default
# the simulated population and the cutouts stay under data/ when run from the repository
export MANTIS_CACHE_DIR ?= $(CURDIR)/data

.PHONY: help install train smoke test test-all bench lint format clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install mantis with everything it needs

train: install ## simulate the sky, fetch, build, train early+late fusion, evaluate (runs/$(RUN)/)
	$(BIN)/mantis pipeline --config $(RUN)

smoke: install ## the same chain on a tiny sky (about two minutes)
	$(BIN)/mantis pipeline --config smoke

test: install lint ## lint, then the test suite without the slow and remote tests
	$(BIN)/python -m pytest -n 2 --dist loadgroup

test-all: install lint ## every offline test, the slow ones included
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not remote"

bench: install ## run scripts/bench_*.py; JSON under bench/results/, tables in docs/benchmarks.md
	@set -e; for s in scripts/bench_*.py; do echo "== $$s"; $(BIN)/python $$s; done

lint: install ## ruff check and format check
	$(BIN)/ruff check mantis tests scripts
	$(BIN)/ruff format --check mantis tests scripts

format: install ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix mantis tests scripts
	$(BIN)/ruff format mantis tests scripts

clean: ## remove caches and run outputs (keeps .venv and data/)
	rm -rf .pytest_cache .ruff_cache build *.egg-info runs/smoke bench/results/*.json
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +
