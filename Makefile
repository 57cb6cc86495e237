# The two set-up commands (README): `make run` starts the stack with a demo app; `make test` runs the tests.
# Both create .venv and install everything the project needs on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: run test lint typecheck bench clean system-deps

# Debian packages the tests drive for real (browser tests, HAProxy in front of the roles); installed when
# missing and running as root. Each package installs a command of the same name.
SYSTEM_PACKAGES := chromium haproxy

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/oglog demo

system-deps:
	@missing=0; for cmd in $(SYSTEM_PACKAGES); do command -v $$cmd >/dev/null 2>&1 || missing=1; done; \
	[ $$missing = 0 ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing $(SYSTEM_PACKAGES) from Debian's packages"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	  else \
	    echo "missing: $(SYSTEM_PACKAGES) (install them to run the browser tests)" >&2; \
	  fi; }

test: $(VENV)/.installed system-deps
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy --strict sdk/oglogstream

bench: $(VENV)/.installed
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
