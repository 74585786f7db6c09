# The README's two commands: `make run` and `make test`.
# `make run` installs only what serving needs (requirements.txt), so a fresh clone answers
# quickly; `make test` adds the test tools (requirements-dev.txt) on top.
PYTHON ?= python3
VENV := .venv
PIP := $(VENV)/bin/pip --disable-pip-version-check
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): requirements.txt | $(VENV)/bin/python
	$(PIP) install --quiet -r requirements.txt
	touch $@

$(TEST_STAMP): requirements-dev.txt $(RUN_STAMP)
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@

run: $(RUN_STAMP)
	bin/dev

# axe-core for the browser tests' accessibility checks, when npm is on this machine
# (without it those checks are skipped locally, and required under CI).
NODE_DIR := tests/support/node
NODE_STAMP := $(NODE_DIR)/node_modules/.package-lock.json
NPM := $(shell command -v npm)

$(NODE_STAMP): $(NODE_DIR)/package-lock.json
	npm ci --prefix $(NODE_DIR) --no-audit --no-fund --loglevel=error

test: $(TEST_STAMP) $(if $(NPM),$(NODE_STAMP))
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)
