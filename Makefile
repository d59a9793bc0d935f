# halab: `make demo` (lab up + the headline failover) and `make test` (the whole suite) do
# all set-up on a fresh Debian 12 machine. Run as root: the lab is made of namespaces.
PYTHON   ?= python3
VENV     ?= .venv
LAB      ?= lab.yaml
PROVIDER ?= netns
PYTEST_ARGS ?=

HALAB  := $(VENV)/bin/halab
PYTEST := $(VENV)/bin/pytest

.PHONY: setup lab-up lab-down lab-status demo test test-unit lint clean help

help:
	@echo "make demo        lab up, kill HAProxy on lb01, watch the VIP move (does all set-up)"
	@echo "make test        the whole pytest suite (does all set-up)"
	@echo "make lab-up | lab-status | lab-down | clean"
	@echo "make test-unit   the tests that need no root and no lab"
	@echo "make lint        ruff"

setup: $(VENV)/.installed
	@scripts/setup-debian.sh

$(VENV)/.installed: pyproject.toml
	@scripts/setup-debian.sh
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	@touch $@

lab-up: setup
	$(HALAB) up -f $(LAB) --provider $(PROVIDER)

lab-down: $(VENV)/.installed
	$(HALAB) down -f $(LAB)

lab-status: $(VENV)/.installed
	$(HALAB) status -f $(LAB)

demo: setup
	$(HALAB) demo -f $(LAB)

test: setup
	$(PYTEST) --lab-file $(LAB) --lab-provider $(PROVIDER) $(PYTEST_ARGS)

test-unit: $(VENV)/.installed
	$(PYTEST) tests/unit $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

clean: $(VENV)/.installed
	$(HALAB) clean -f $(LAB)

# A short chaos run (3 scenarios, fixed seed); CHAOS_ARGS="--iterations 20 --seed 42" for more.
# Brings the lab up first when it is not up; the report lands in chaos-report/.
CHAOS_ARGS ?= --iterations 3 --seed 1
.PHONY: chaos
chaos: setup
	@$(HALAB) status -f $(LAB) >/dev/null 2>&1 || $(HALAB) up -f $(LAB) --provider $(PROVIDER)
	$(HALAB) chaos -f $(LAB) $(CHAOS_ARGS) --report chaos-report
