# twinstack: `make` lists the targets. Every public target carries a `## description`.
# Runner: native mode (supervisord + nginx from the OS packages). Docker Compose is the
# deployment template (docker-compose.yml).

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Re-install when the pinned dependencies change.
STAMP  := $(VENV)/.installed

.PHONY: help up down restart status logs loadtest test lint check clean

# make loadtest PROFILE=smoke|mixed|stress|spike|soak WORKERS=N
PROFILE ?= mixed
WORKERS ?= 0

help: ## Show this help
	@echo "twinstack: FastAPI and Flask side by side behind one nginx"
	@echo
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

up: $(STAMP) .system-deps ## Start the stack detached, wait until healthy, print the URLs
	@$(PY) -m native up

down: ## Stop the stack gracefully (in-flight requests finish)
	@if [ -x $(PY) ]; then $(PY) -m native down; else echo "twinstack is not running."; fi

restart: $(STAMP) .system-deps ## Stop, then start the stack again
	@$(PY) -m native restart

status: $(STAMP) ## Show each process and whether the stack answers
	@$(PY) -m native status

logs: $(STAMP) ## Follow every log of the running stack, interleaved
	@$(PY) -m native logs

loadtest: up ## Headless Locust run against the stack (PROFILE=mixed, WORKERS=0); report in reports/
	@$(PY) -m loadtest $(PROFILE) --workers $(WORKERS)

check: $(STAMP) .system-deps ## Validate the nginx configuration (nginx -t on the rendered templates)
	@$(PY) -m native check

test: lint .test-deps ## Lint, then run the whole test suite (unit, contract, the real stack through nginx)
	@$(PY) -m pytest

lint: $(STAMP) ## Check the code with ruff (style, imports, likely bugs)
	@$(PY) -m ruff check .
	@$(PY) -m ruff format --check .

clean: down ## Stop the stack and remove the virtualenv, runtime files and logs
	rm -rf $(VENV) run logs reports .pytest_cache

# --- helpers (not listed) ------------------------------------------------------------------
$(STAMP): pyproject.toml
	@scripts/system-deps.sh python3-venv
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[loadtest,test]'
	@touch $@

.PHONY: .system-deps
.system-deps:
	@scripts/system-deps.sh nginx

# The browser tests drive Debian's chromium through Playwright.
.PHONY: .test-deps
.test-deps:
	@scripts/system-deps.sh nginx chromium
