# twinstack: `make` lists the targets. Every public target carries a `## description`.
# Runner: Docker Compose when a Docker engine answers, native mode (supervisord + nginx from
# the OS packages) otherwise. STACK=docker or STACK=native forces one; STACK=kubernetes
# applies deploy/kubernetes (OVERLAY=local|production) to the cluster kubectl reaches.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
# Re-install when the pinned dependencies change.
STAMP   := $(VENV)/.installed
COMPOSE ?= docker compose
STACK   ?= $(shell docker info >/dev/null 2>&1 && echo docker || echo native)
# make loadtest PROFILE=smoke|mixed|stress|spike|soak WORKERS=N
PROFILE ?= mixed
WORKERS ?= 0
# make up MONITORING=1: Prometheus (and Grafana under Docker) next to the stack.
MONITORING ?=
MONITORING_ENV := $(if $(MONITORING),TWINSTACK_MONITORING=$(MONITORING))
# make up TLS=1: HTTPS on TWINSTACK_TLS_PORT (8443) as well, the plain port redirecting there;
# TWINSTACK_TLS=true in .env keeps it on. Without a certificate of its own (TWINSTACK_TLS_CERTIFICATE)
# it uses the one `make tls-cert` makes for localhost, made on first use.
TLS ?=
TLS_ON := $(filter 1 true,$(TLS))
TLS_CERT := nginx/tls/certs/tls.crt
NATIVE_ENV := $(MONITORING_ENV) $(if $(TLS),TWINSTACK_TLS=$(if $(TLS_ON),true,false))
COMPOSE_PROFILES_ARGS := $(if $(filter 1 true,$(MONITORING)),--profile monitoring)

# make up STACK=kubernetes OVERLAY=local|production; make k8s-render OVERLAY=...
OVERLAY ?= local
CHECKOV := .venv-checkov/bin/checkov

ifeq ($(filter $(STACK),docker native kubernetes),)
$(error STACK must be docker, native or kubernetes, not '$(STACK)')
endif

.PHONY: help up down restart reload status logs loadtest test lint check tls-cert clean k8s-render k8s-check

help: ## Show this help
	@echo "twinstack: FastAPI and Flask side by side behind one nginx (runner: $(STACK))"
	@echo
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-14s %s\n", $$1, $$2}'

up: ## Start the stack detached, wait until healthy, print the URLs
	@$(MAKE) --no-print-directory _up-$(STACK)

down: ## Stop the stack gracefully (in-flight requests finish)
	@$(MAKE) --no-print-directory _down-$(STACK)

restart: ## Stop, then start the stack again
	@$(MAKE) --no-print-directory _down-$(STACK) _up-$(STACK)

reload: ## Reload gracefully: new gunicorn workers and nginx config, no request dropped
	@$(MAKE) --no-print-directory _reload-$(STACK)

status: ## Show each process and whether the stack answers
	@$(MAKE) --no-print-directory _status-$(STACK)

logs: ## Follow every log of the running stack, interleaved
	@$(MAKE) --no-print-directory _logs-$(STACK)

loadtest: up ## Headless Locust run against the stack (PROFILE=mixed, WORKERS=0); report in reports/
	@$(MAKE) --no-print-directory _loadtest-$(STACK)

check: $(STAMP) .system-deps ## Validate the nginx configuration (nginx -t on the rendered templates)
	@$(NATIVE_ENV) $(PY) -m native check

# The suite in two passes (docs/testing.md): everything but the load tests on TEST_WORKERS
# processes side by side, each test file on one of them; then the tests marked `alone`, one at
# a time on an otherwise quiet machine (exit code 5: a project with none of them). What it
# needs first is made side by side: the virtualenv (then lint), checkov's, the system packages.
# TEST_MARKERS narrows both passes (a marker expression: tests/test_variants_run.py runs a
# generated project's suite with "not integration and not repeated").
TEST_WORKERS ?= 4
TEST_MARKERS ?=
# The suite starts hundreds of Python processes (test processes, pools, the servers it runs):
# each reads the bytecode the first one wrote instead of compiling every module (and pytest
# rewriting every test file) again, whatever PYTHONDONTWRITEBYTECODE says outside.
test: export PYTHONDONTWRITEBYTECODE :=
test: ## Lint, then run the whole test suite (unit, contract, the real stack through nginx)
	@$(MAKE) --no-print-directory -j3 lint .test-deps $(CHECKOV)
	@$(PY) -m pytest -m "not alone$(if $(TEST_MARKERS), and ($(TEST_MARKERS)))" -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder
	@$(PY) -m pytest -m "alone$(if $(TEST_MARKERS), and ($(TEST_MARKERS)))" || [ $$? -eq 5 ]

k8s-render: $(STAMP) ## Print the Kubernetes manifests of an overlay (OVERLAY=local|production)
	@$(PY) -m deploy.kubernetes render $(OVERLAY)

k8s-check: $(STAMP) $(CHECKOV) ## Render every overlay; validate it (strict schemas) and run checkov, offline
	@$(PY) -m deploy.kubernetes check

lint: $(STAMP) ## Check the code with ruff (style, imports, likely bugs)
	@$(PY) -m ruff check .
	@$(PY) -m ruff format --check .

tls-cert: ## Make a self-signed certificate for localhost in nginx/tls/certs (make up TLS=1, docker-compose.tls.yml)
	@rm -f $(TLS_CERT)
	@$(MAKE) --no-print-directory $(TLS_CERT)

$(TLS_CERT): | $(STAMP)
	@$(PY) -m native tls-cert

clean: down ## Stop the stack and remove the virtualenv, the database, runtime files and logs
	@if [ -x $(PY) ]; then $(PY) -m native delete-data; fi
	rm -rf $(VENV) .venv-checkov run logs reports .pytest_cache

# --- native mode (not listed) ---------------------------------------------------------------
.PHONY: _up-native _down-native _status-native _logs-native _loadtest-native
_up-native: $(STAMP) .system-deps $(if $(TLS_ON),$(TLS_CERT))
	@$(if $(filter 1 true,$(MONITORING)),scripts/system-deps.sh prometheus prometheus-nginx-exporter)
	@$(NATIVE_ENV) $(PY) -m native up
_down-native:
	@if [ -x $(PY) ]; then $(PY) -m native down; else echo "twinstack is not running."; fi
_reload-native: $(STAMP)
	@$(NATIVE_ENV) $(PY) -m native reload
_status-native: $(STAMP)
	@$(NATIVE_ENV) $(PY) -m native status
_logs-native: $(STAMP)
	@$(NATIVE_ENV) $(PY) -m native logs
_loadtest-native: $(STAMP)
	@host="$$($(NATIVE_ENV) $(PY) -m native url)" && $(PY) -m loadtest $(PROFILE) --host "$$host" --workers $(WORKERS)

# --- Docker Compose (not listed) -----------------------------------------------------------
.PHONY: _up-docker _down-docker _status-docker _logs-docker _loadtest-docker
_up-docker: .env $(if $(TLS_ON),$(TLS_CERT))
	$(COMPOSE) $(if $(TLS_ON),-f docker-compose.yml -f docker-compose.tls.yml) $(COMPOSE_PROFILES_ARGS) up -d --build --wait
	@echo "twinstack is up (Docker Compose): http://localhost:$$(grep -E '^TWINSTACK_PUBLIC_PORT=' .env | cut -d= -f2)/"
_down-docker:
	$(COMPOSE) --profile loadtest --profile monitoring down
_reload-docker:
	$(COMPOSE) kill -s HUP fastapi flask
	$(COMPOSE) exec nginx nginx -s reload
_status-docker:
	$(COMPOSE) --profile loadtest --profile monitoring ps
_logs-docker:
	$(COMPOSE) --profile loadtest --profile monitoring logs -f --tail=50
_loadtest-docker:
	$(COMPOSE) --profile loadtest run --rm --entrypoint python locust-master \
		-m loadtest $(PROFILE) --host http://nginx:8080 --workers $(WORKERS)

# --- Kubernetes (not listed): scripts/kubernetes.sh -----------------------------------------
.PHONY: _up-kubernetes _down-kubernetes _status-kubernetes _logs-kubernetes _reload-kubernetes _loadtest-kubernetes
_up-kubernetes _down-kubernetes _status-kubernetes _logs-kubernetes: $(STAMP)
	@OVERLAY=$(OVERLAY) scripts/kubernetes.sh $(patsubst _%-kubernetes,%,$@)
_reload-kubernetes: _up-kubernetes
_loadtest-kubernetes: $(STAMP)
	@$(VENV)/bin/kubectl -n twinstack delete job locust-headless --ignore-not-found
	@$(PY) -m deploy.kubernetes render locust-headless | $(VENV)/bin/kubectl apply -f -
	@echo "Running: kubectl -n twinstack logs -f job/locust-headless"

# checkov in a virtualenv of its own (deploy/kubernetes/requirements-checkov.txt).
$(CHECKOV): deploy/kubernetes/requirements-checkov.txt
	@test -x .venv-checkov/bin/python || $(PYTHON) -m venv .venv-checkov
	@.venv-checkov/bin/python -m pip install -q -r deploy/kubernetes/requirements-checkov.txt
	@touch $@

# The compose file requires TWINSTACK_PUBLIC_PORT: start from the documented example.
.env:
	cp .env.example .env
	@echo "Created .env from .env.example; edit it to change ports and pool sizes."

# --- set-up (not listed) ---------------------------------------------------------------------
# The project (the contract and the runtime, native mode, Locust, the tests) and each part's own
# requirements.txt (a service's, the migrations', an optional part's). A part that is not there
# installs nothing.
REQUIREMENTS := $(wildcard */requirements.txt)
$(STAMP): pyproject.toml $(REQUIREMENTS)
	@scripts/system-deps.sh python3-venv
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[native,loadtest,test]' $(addprefix -r ,$(REQUIREMENTS))
	@touch $@

.PHONY: .system-deps .test-deps
# nginx, logrotate for the log files nginx and the pools write natively, PostgreSQL.
.system-deps:
	@scripts/system-deps.sh nginx logrotate postgresql
# The browser tests drive Debian's chromium through Playwright; promtool checks the
# Prometheus config and the monitoring test runs Prometheus and the nginx exporter; an optional
# part's make file adds what its own tests run.
TEST_PACKAGES := nginx logrotate postgresql chromium prometheus prometheus-nginx-exporter testssl.sh
.test-deps:
	@scripts/system-deps.sh $(TEST_PACKAGES)

# Each optional part's own targets (a *.mk file in its folder), where the project has the part.
-include $(wildcard */*.mk)
