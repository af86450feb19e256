# copydata developer targets. Every target installs what it needs first (scripts/bootstrap.sh is
# idempotent and takes well under a second when nothing changed). The environment (AIRFLOW_HOME,
# DAG and plugin folders, COPYDATA_HOME, ports, auth) is defined once, in scripts/env.sh.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ENV         := . $(CURDIR)/scripts/env.sh &&
LINT_PATHS  := $(wildcard include dags plugins tests benchmarks)
PYTEST_ARGS ?=
DEMO_ARGS   ?=

.PHONY: help bootstrap lint test demo up down clean

help:
	@echo "make bootstrap  Debian packages, .venv (uv), Airflow metadata DB in .airflow/"
	@echo "make lint       ruff check $(LINT_PATHS)"
	@echo "make test       bootstrap + lint + pytest (as root; PYTEST_ARGS='...' is passed through)"
	@echo "make demo       bootstrap + scripts/demo.py (DEMO_ARGS='...' is passed through)"
	@echo "make up         emulator + Airflow (api-server, scheduler, dag-processor, triggerer) on 127.0.0.1:8080"
	@echo "make down       stop Airflow and the emulator"
	@echo "make clean      down, then remove .airflow/ and .copydata/ (keeps .venv/)"

bootstrap:
	@$(CURDIR)/scripts/bootstrap.sh

lint:
	@$(CURDIR)/scripts/bootstrap.sh --python-only
	$(ENV) ruff check $(LINT_PATHS)

test: bootstrap
	@if [ "$$(id -u)" != 0 ]; then echo "make test: the tests need root (loop devices, mounts)" >&2; exit 1; fi
	$(ENV) ruff check $(LINT_PATHS)
	@$(ENV) rc=0; $(CURDIR)/.venv/bin/pytest -q --durations=12 $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc = 5 ]; then echo "make test: pytest collected no tests (exit 5): failing" >&2; fi; \
	exit $$rc

demo: bootstrap
	@if [ ! -f $(CURDIR)/scripts/demo.py ]; then echo "make demo: scripts/demo.py does not exist yet" >&2; exit 1; fi
	$(ENV) $(CURDIR)/.venv/bin/python $(CURDIR)/scripts/demo.py $(DEMO_ARGS)

up: bootstrap
	@$(CURDIR)/scripts/airflow_up.sh

down:
	@$(CURDIR)/scripts/airflow_down.sh

clean: down
	@$(ENV) if grep -qF " $$COPYDATA_HOME/" /proc/self/mountinfo; then \
	    echo "make clean: something is still mounted under $$COPYDATA_HOME; not removing it" >&2; \
	    grep -F " $$COPYDATA_HOME/" /proc/self/mountinfo >&2; exit 1; fi; \
	if losetup -l -n -O BACK-FILE 2>/dev/null | grep -qF "$$COPYDATA_HOME/"; then \
	    echo "make clean: a loop device still uses a file under $$COPYDATA_HOME; not removing it" >&2; exit 1; fi; \
	rm -rf "$$COPYDATA_HOME" "$$AIRFLOW_HOME"; \
	echo "removed $$COPYDATA_HOME and $$AIRFLOW_HOME (kept .venv)"
