# order-proxy: every workflow is a make target, the same locally and in CI.
# The venv is built from the hashed lock (requirements/*.txt, made from pyproject.toml by
# `make lock`) on first use, and rebuilt when the lock or pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
LOCK_ARGS ?=
# The resolver `make lock` uses (only there: installs read the lock with pip).
UV_VERSION ?= 0.13.9
# `make image`: the OCI labels come from the package version and git.
DOCKER   ?= docker
VERSION  := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE   ?= $(or $(shell git remote get-url origin 2>/dev/null),unknown)
IMAGE    ?= order-proxy:$(VERSION)

.DEFAULT_GOAL := help
.PHONY: help venv lock lock-check tools demo serve test lint format typecheck check bench bench-accept soak check-history k8s-check image docs clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements/build.txt requirements/dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/build.txt
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

venv: $(STAMP) ## create the virtualenv with the project and its dev tools, from the lock

lock: $(STAMP) ## re-resolve requirements/*.txt from pyproject.toml (LOCK_ARGS=--upgrade: newest)
	$(BIN)/python -m pip install --quiet 'uv==$(UV_VERSION)'
	$(BIN)/python scripts/lock.py $(LOCK_ARGS)

lock-check: $(STAMP) ## fail if pyproject.toml and requirements/*.txt disagree (offline)
	$(BIN)/python scripts/lock.py --check

tools: $(STAMP) ## make sure redis-server (and prometheus/promtool, wrk where possible) are present
	@bash scripts/ensure-tools.sh

demo: $(STAMP) ## run the simulator + proxy on loopback: a MISS then a HIT, two merchants, a wait, the control API
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

check: lock-check lint typecheck test ## everything CI runs

soak: tools ## minutes of mixed traffic with faults (SOAK_SECONDS=180); reports errors, latency, RSS
	$(BIN)/python scripts/soak.py --seconds $${SOAK_SECONDS:-180}

check-history: tools ## many seeded histories (SEEDS=200) against real processes, every answer checked
	$(BIN)/python scripts/check_history.py --seeds $${SEEDS:-200}

bench: tools ## benchmark the hot paths against ceilings measured in the same run (results: bench/runs/)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

bench-accept: ## make the last `make bench` run the tracked reference, bench/results/latest.json
	@test -f bench/runs/latest.json || { echo "make bench-accept: no run in bench/runs/: make bench first" >&2; exit 1; }
	cp bench/runs/latest.json bench/results/latest.json
	@echo "bench/results/latest.json updated: commit it with the docs/performance.md table it backs"

k8s-check: $(STAMP) ## render and validate every k8s overlay and the Helm chart, lint the Dockerfile
	bash scripts/k8s-check.sh

image: $(STAMP) ## build the image with OCI labels (version, source, revision); without a Docker engine: lint only
	@if command -v $(DOCKER) >/dev/null 2>&1 && $(DOCKER) info >/dev/null 2>&1; then \
	  $(DOCKER) build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) \
	    --build-arg SOURCE=$(SOURCE) -t $(IMAGE) . ; \
	else \
	  echo "make image: no Docker engine here ($(DOCKER) missing or not running): the image is NOT built;"; \
	  echo "make image: linting the Dockerfile instead (hadolint)."; \
	  $(BIN)/hadolint Dockerfile && echo "make image: hadolint found nothing"; \
	fi

docs: $(STAMP) ## regenerate the settings tables of docs/configuration.md from the schema
	$(BIN)/python scripts/gen_config_docs.py

clean: ## remove the venv and caches
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
