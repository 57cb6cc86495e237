# The two set-up commands (README): `make run` starts the stack with a demo app; `make test` runs the tests.
# Both create .venv on a fresh machine. `make run` installs only what running needs (the [stack] extra);
# `make test` adds the [dev] set (pytest, mypy, Playwright, benchmark peers). Each has its own stamp file, so
# `make run` never pays for the test tools (cold times in docs/cli.md).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# `make run PORT=9090 DATA_DIR=./other-data`: where the demo stack listens and keeps its data (a second stack
# in the same clone needs both: the data dir is locked by the first).
PORT     ?= 8080
DATA_DIR ?= ./oglog-data

.PHONY: run test lint typecheck bench clean system-deps

# Debian packages the tests drive for real (browser tests, HAProxy in front of the roles); installed when
# missing and running as root. Each package installs a command of the same name.
SYSTEM_PACKAGES := chromium haproxy

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[stack]'
	touch $@

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(VENV)/bin/oglog demo --port $(PORT) --data-dir $(DATA_DIR)

system-deps:
	@missing=0; for cmd in $(SYSTEM_PACKAGES); do command -v $$cmd >/dev/null 2>&1 || missing=1; done; \
	[ $$missing = 0 ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing $(SYSTEM_PACKAGES) from Debian's packages"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	  else \
	    echo "missing: $(SYSTEM_PACKAGES) (install them to run the browser tests)" >&2; \
	  fi; }

# Two parts: most tests on TEST_WORKERS pytest-xdist workers (they mostly wait on processes and timeouts, so
# 3 pay on 2 cores; tests sharing a module fixture stay on one worker), then the `serial` ones alone
# (tests/conftest.py SERIAL says why each). Both parts always run; the target fails if either failed.
TEST_WORKERS ?= 3
test: $(VENV)/.installed system-deps
	status=0; \
	$(PY) -m pytest -q --durations=25 -n $(TEST_WORKERS) --dist loadgroup -m "not serial" || status=$$?; \
	$(PY) -m pytest -q --durations=5 -m serial || status=$$?; \
	exit $$status

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy --strict sdk/oglogstream

bench: $(VENV)/.installed
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
