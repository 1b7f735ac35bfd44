# order-proxy: every workflow is a make target, the same locally and in CI.
# The venv is built from pyproject.toml on first use and rebuilt when it changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv tools demo serve test lint format typecheck check bench soak check-history k8s-check clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

venv: $(STAMP) ## create the virtualenv with the project and its dev tools

tools: $(STAMP) ## make sure redis-server (and prometheus/promtool, wrk where possible) are present
	@bash scripts/ensure-tools.sh

demo: $(STAMP) ## run the simulator + proxy on loopback and show a MISS then a HIT
	$(BIN)/order-proxy demo

test: tools ## run the whole test suite (starts its own redis-server on a free port)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## apply ruff formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP) ## mypy --strict on proxy/
	$(BIN)/mypy

check: lint typecheck test ## everything CI runs

soak: tools ## minutes of mixed traffic with faults (SOAK_SECONDS=180); reports errors, latency, RSS
	$(BIN)/python scripts/soak.py --seconds $${SOAK_SECONDS:-180}

check-history: tools ## many seeded histories (SEEDS=200) against real processes, every answer checked
	$(BIN)/python scripts/check_history.py --seeds $${SEEDS:-200}

bench: tools ## benchmark the hot paths against ceilings measured in the same run
	$(BIN)/python -m bench.run $(BENCH_ARGS)

k8s-check: $(STAMP) ## render and validate every k8s overlay, lint the Dockerfile
	bash scripts/k8s-check.sh

clean: ## remove the venv and caches
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
