# leadrouter: `make run` brings everything up, `make test` runs the whole suite.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements.lock
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | sha1sum | cut -c1-12)
export PYTHON_FOR_INFRA := $(abspath $(BIN)/python)

.PHONY: help venv lock audit infra-up infra-down infra-status run test test-unit lint clean bench bench-quick bench-profile bench-setup chaos sdk-clients contract-validator

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
	  { echo "leadrouter needs Python 3.11; set PYTHON=/path/to/python3.11"; exit 1; }
	@echo "[venv] creating $(VENV) and installing the pinned, hash-checked dependencies of $(LOCK)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --progress-bar off --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --progress-bar off --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP) ## create .venv from requirements.lock (re-runs when it or pyproject.toml changes)

lock: venv ## re-pin every dependency with hashes after editing pyproject.toml
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-find-links \
	  --extra dev --extra reports -o $(LOCK) pyproject.toml

# Fails on a known vulnerability. When no vulnerability database answers (PyPI's JSON API or
# OSV unreachable), it says loudly that nothing was audited; AUDIT_REQUIRED=1 makes that fatal.
audit: venv ## scan the locked dependencies for known vulnerabilities (pip-audit)
	@out=$$($(BIN)/pip-audit --strict --disable-pip --require-hashes -r $(LOCK) 2>&1); rc=$$?; \
	echo "$$out" | grep -v "could not be audited" | head -40; \
	if echo "$$out" | grep -qE "Found [0-9]+ known vulnerabilit"; then exit 1; fi; \
	if [ $$rc -ne 0 ] && echo "$$out" | grep -q "could not be audited"; then \
	  echo "[audit] WARNING: no vulnerability database was reachable: the dependencies were NOT audited."; \
	  echo "[audit] Run 'make audit' where pypi.org (or OSV: add --vulnerability-service osv) answers."; \
	  [ "$(AUDIT_REQUIRED)" != 1 ] || exit 1; \
	elif [ $$rc -ne 0 ]; then exit $$rc; fi

infra-up: venv ## start Kafka and PostgreSQL on 127.0.0.1 (idempotent) and migrate the database
	PYTHON=$(PYTHON_FOR_INFRA) deploy/infra/infra.sh up
	$(BIN)/leadrouter migrate

infra-down: ## stop Kafka and PostgreSQL started by infra-up
	PYTHON=$(PYTHON_FOR_INFRA) deploy/infra/infra.sh down

infra-status: ## say whether Kafka and PostgreSQL run
	PYTHON=$(PYTHON_FOR_INFRA) deploy/infra/infra.sh status

run: infra-up ## start the three services with the example playbook; Ctrl-C stops them
	deploy/run.sh

test: infra-up sdk-clients contract-validator ## start the infrastructure and run the whole test suite
	$(BIN)/pytest

# The official JavaScript tracking SDKs the Tracking API tests drive, pinned by their lock file.
sdk-clients: tests/sdk/node_modules/.package-lock.json
tests/sdk/node_modules/.package-lock.json: tests/sdk/package.json tests/sdk/package-lock.json
	@command -v npm >/dev/null || { echo "[sdk] npm is needed: apt-get install -y nodejs npm"; exit 1; }
	cd tests/sdk && npm ci --no-audit --no-fund

# The official AsyncAPI parser the contract tests validate the document with, pinned by its lock file.
contract-validator: contracts/validator/node_modules/.package-lock.json
contracts/validator/node_modules/.package-lock.json: contracts/validator/package.json contracts/validator/package-lock.json
	@command -v npm >/dev/null || { echo "[contracts] npm is needed: apt-get install -y nodejs npm"; exit 1; }
	cd contracts/validator && npm ci --no-audit --no-fund

test-unit: venv ## only the pure unit tests (no Kafka or PostgreSQL needed)
	$(BIN)/pytest tests/unit

# The import contracts (pyproject.toml [tool.importlinter], docs/architecture.md) are the
# boundaries between the rooms; pip-audit needs a vulnerability database online: `make audit`.
lint: venv ## ruff, mypy and the import contracts (lint-imports)
	$(BIN)/ruff check shared services tests bench harness
	$(BIN)/mypy
	$(BIN)/lint-imports

clean: ## remove the virtual environment (keeps .local data)
	rm -rf $(VENV)

# The benchmark runs on the Kafka and PostgreSQL named by LEADROUTER_KAFKA_PORT and
# LEADROUTER_POSTGRES_PORT (and _STATE), default the usual 9092 and 5432, in its own databases.
bench-setup: venv
	$(BIN)/pip install --quiet --progress-bar off -e '.[dev,bench]'
	@command -v wrk >/dev/null || { echo "[bench] installing wrk: apt-get install -y wrk"; apt-get install -y wrk; }
	PYTHON=$(PYTHON_FOR_INFRA) deploy/infra/infra.sh up

bench: bench-setup ## every scenario 3 times with same-run baselines; report in .local/bench-report/
	$(BIN)/python -m bench

bench-quick: bench-setup ## the same, shorter and once (a few minutes)
	$(BIN)/python -m bench --quick

bench-profile: bench-setup ## one full-size run of each scenario with every service under py-spy: where each one's time goes
	$(BIN)/python -m bench --repeat 1 --profile $(if $(ONLY),--only $(ONLY))

chaos: venv ## fault run: 100,000 events through HTTP while services, Kafka and Postgres fail (own Kafka :19092, Postgres :15432)
	$(BIN)/python -m harness.chaos $(CHAOS_ARGS)
