# airdock — the README's commands. Each target installs what it needs first.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.airdock-installed
LINT_PATHS := src tests scripts $(wildcard benchmarks)
# Debian packages the tests need (one apt-get run when some are missing): the engine and registry,
# the local cluster's PostgreSQL and Redis, the browser of the Container hosts page's test.
TEST_PACKAGES := docker.io docker-registry busybox-static postgresql redis-server chromium

.PHONY: install lint test test-unit test-cluster cluster cluster-down demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml scripts/install.sh scripts/install-constraints.txt
	@scripts/install.sh
	@touch $(STAMP)

lint: install
	@echo "== lint: ruff + mypy"
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

test: lint
	@echo "== test: unit, integration, e2e (engine, registry, local stack, Airflow) and the local cluster"
	@scripts/packages.sh $(TEST_PACKAGES)
	@scripts/engine.sh run scripts/test.sh $(PYTEST_ARGS)

test-unit: install
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-cluster: lint
	@echo "== test: the local cluster (CeleryExecutor, PostgreSQL, two worker hosts)"
	@scripts/packages.sh $(TEST_PACKAGES)
	@scripts/engine.sh run $(BIN)/pytest tests/cluster $(PYTEST_ARGS)

cluster:
	@scripts/cluster.sh up

cluster-down:
	@scripts/cluster.sh down

demo: install
	@scripts/engine.sh run scripts/demo.sh

bench: install
	@scripts/engine.sh run $(BIN)/python -m benchmarks

clean:
	-scripts/cluster.sh down 2>/dev/null
	-$(BIN)/airdock local down 2>/dev/null
	-scripts/engine.sh stop
	rm -rf $(VENV) .airdock .mypy_cache .ruff_cache .pytest_cache
