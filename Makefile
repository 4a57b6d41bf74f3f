# Two commands a newcomer needs: `make run` and `make test`. Everything else is set up here.
PYTHON ?= python3
VENV := .venv
SYNAPSE_VENV := .venv-synapse
PIP_QUIET := --quiet --disable-pip-version-check
# pip's output goes to a log, shown only when an install fails.
LOGGED = > $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log >&2; exit 1; }

.PHONY: run test lint bench clean

run: $(VENV)/.run-installed
	@$(VENV)/bin/crewbridge run --config config/demo.toml

test: lint $(SYNAPSE_VENV)/.installed
	$(VENV)/bin/python -m pytest

# ruff, and the package layers (import-linter): bot/ above bridges/ | supervisor/, no cycles.
lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

bench: $(VENV)/.test-installed
	$(VENV)/bin/python -m bench.run_all

$(VENV)/bin/python:
	@$(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install $(PIP_QUIET) --upgrade pip $(LOGGED)

$(VENV)/.run-installed: pyproject.toml $(VENV)/bin/python
	@echo "Installing crewbridge into $(VENV) ..." >&2
	@$(VENV)/bin/pip install $(PIP_QUIET) -e . $(LOGGED)
	@touch $@

$(VENV)/.test-installed: pyproject.toml $(VENV)/bin/python
	@echo "Installing crewbridge and its test tools into $(VENV) ..." >&2
	@$(VENV)/bin/pip install $(PIP_QUIET) -e '.[test]' $(LOGGED)
	@touch $@ $(VENV)/.run-installed

# Synapse lives in its own virtualenv: the tests run it as a separate server process,
# and its many dependencies stay out of the bot's environment.
$(SYNAPSE_VENV)/.installed:
	@$(PYTHON) -m venv $(SYNAPSE_VENV)
	@$(SYNAPSE_VENV)/bin/pip install $(PIP_QUIET) --upgrade pip > $(SYNAPSE_VENV)/install.log 2>&1
	@echo "Installing a Synapse homeserver for the tests into $(SYNAPSE_VENV) ..." >&2
	@$(SYNAPSE_VENV)/bin/pip install $(PIP_QUIET) matrix-synapse > $(SYNAPSE_VENV)/install.log 2>&1 \
		|| { cat $(SYNAPSE_VENV)/install.log >&2; exit 1; }
	@touch $@

clean:
	rm -rf $(VENV) $(SYNAPSE_VENV) var .pytest_cache .ruff_cache
