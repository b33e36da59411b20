# The two commands: `make dev` runs the whole stack, `make test` runs the whole test suite.
SHELL := /bin/bash
export PATH := $(HOME)/.local/bin:$(PATH)
export PYTHONPATH := $(CURDIR)/infra/local
UV := uv run --frozen

.PHONY: bootstrap dev dev-reset test lint check token

bootstrap:
	@bash scripts/bootstrap.sh

dev: bootstrap
	@$(UV) python -m devstack up

# The dev stack from nothing: removes its Keycloak database, Redis file and service databases.
dev-reset: bootstrap
	@$(UV) python -m devstack reset
	@$(UV) python -m devstack up

test: bootstrap
	@$(UV) pytest --cov --cov-report=term

lint: bootstrap
	@$(UV) ruff check .
	@$(UV) ruff format --check gateway orchestrator tests infra scripts $(wildcard bench)
	@$(UV) mypy

check: lint test

# A dev user's access token for curl examples: `make token AS=tech1` (stack must be running).
token:
	@$(UV) python -m devstack token $(AS)
