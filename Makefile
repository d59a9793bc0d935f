# halab: `make demo` (lab up + the headline failover) and `make test` (the whole suite) do
# all set-up on a fresh Debian 12 machine. Run as root: the lab is made of namespaces.
PYTHON   ?= python3
VENV     ?= .venv
LAB      ?= lab.yaml
PROVIDER ?= netns
PYTEST_ARGS ?=
# The embedded suite runs on several labs at once, one per pytest-xdist worker, each named
# after $(LAB)'s lab and the worker (halabgw0, ...): the suite mostly waits on protocol
# timers, so labs side by side share a few cores well. WORKERS=0: one process, on $(LAB).
# 2: three were 3.5 min faster on this 2-core machine, but under load a preemption there
# cut a probe a scenario allows none (README, Speed).
WORKERS  ?= 2
# On VMs: the failover and API server suites (the rest exercises the embedded lab itself).
VM_TESTS ?= tests/unit tests/test_failover.py tests/test_apiserver.py

HALAB  := $(VENV)/bin/halab
PYTEST := $(VENV)/bin/pytest

.PHONY: setup setup-tests setup-vagrant box lab-up lab-down lab-status demo test test-unit lint clean help

help:
	@echo "make demo        lab up, kill HAProxy on lb01, watch the VIP move (does all set-up)"
	@echo "make test        the whole pytest suite (does all set-up)"
	@echo "make test PROVIDER=vagrant   the failover suite on libvirt VMs (builds the box)"
	@echo "make box         the offline Debian 12 vagrant box"
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

# What only the suite needs (the web page test's headless Chromium): not part of `make setup`.
setup-tests: setup
	@scripts/setup-debian.sh tests

# The VM provider: Debian's vagrant, vagrant-libvirt, libvirt and qemu, and the Python side.
setup-vagrant: $(VENV)/.installed
	@scripts/setup-debian.sh vagrant
	$(VENV)/bin/pip install -q -e '.[dev,vagrant]'

# An offline Debian 12 box (debootstrap, no download), added to vagrant as halab/debian12.
box: setup-vagrant
	box/build.sh

# A lab that is already up is kept, so that `make lab-up && pytest` works every time.
lab-up: $(if $(filter vagrant,$(PROVIDER)),box,setup)
	@if $(HALAB) status -f $(LAB) >/dev/null 2>&1; then \
	    echo "lab-up: the lab of $(LAB) is already up (make lab-down LAB=$(LAB) to rebuild it)"; \
	else $(HALAB) up -f $(LAB) --provider $(PROVIDER); fi

lab-down: $(VENV)/.installed
	$(HALAB) down -f $(LAB)

lab-status: $(VENV)/.installed
	$(HALAB) status -f $(LAB)

demo: setup
	$(HALAB) demo -f $(LAB)

XDIST := $(if $(filter-out 0,$(WORKERS)),-n $(WORKERS) --dist loadgroup)

test: $(if $(filter vagrant,$(PROVIDER)),box,setup-tests)
	$(PYTEST) --lab-file $(LAB) --lab-provider $(PROVIDER) $(PYTEST_ARGS) \
	    $(if $(filter vagrant,$(PROVIDER)),$(VM_TESTS),$(XDIST))

test-unit: $(VENV)/.installed
	$(PYTEST) tests/unit $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

# The lab of $(LAB), and those of the suite's workers (their lab files: .halab/_xdist/).
clean: $(VENV)/.installed
	$(HALAB) clean -f $(LAB)
	@for f in $(dir $(LAB)).halab/_xdist/*.yaml; do \
	    [ ! -e "$$f" ] || $(HALAB) clean -f "$$f"; done

# A short chaos run (3 scenarios, fixed seed); CHAOS_ARGS="--iterations 20 --seed 42" for more.
# Brings the lab up first when it is not up; the report lands in chaos-report/.
CHAOS_ARGS ?= --iterations 3 --seed 1
.PHONY: chaos
chaos: setup
	@$(HALAB) status -f $(LAB) >/dev/null 2>&1 || $(HALAB) up -f $(LAB) --provider $(PROVIDER)
	$(HALAB) chaos -f $(LAB) $(CHAOS_ARGS) --report chaos-report
