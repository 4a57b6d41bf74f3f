# Two commands a newcomer needs: `make run` and `make test`. Everything else is set up here.
PYTHON ?= python3
VENV := .venv
SYNAPSE_VENV := .venv-synapse
PIP_QUIET := --quiet --disable-pip-version-check

.PHONY: run test lint bench clean

run: $(VENV)/.run-installed
	@$(VENV)/bin/crewbridge run --config config/demo.toml

test: $(VENV)/.test-installed $(SYNAPSE_VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check .

bench: $(VENV)/.test-installed
	$(VENV)/bin/python -m bench.run_all

$(VENV)/bin/python:
	@$(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install $(PIP_QUIET) --upgrade pip

$(VENV)/.run-installed: pyproject.toml $(VENV)/bin/python
	@$(VENV)/bin/pip install $(PIP_QUIET) -e . >&2
	@touch $@

$(VENV)/.test-installed: pyproject.toml $(VENV)/bin/python
	@$(VENV)/bin/pip install $(PIP_QUIET) -e '.[test]' >&2
	@touch $@ $(VENV)/.run-installed

# Synapse lives in its own virtualenv: the tests run it as a separate server process,
# and its many dependencies stay out of the bot's environment.
$(SYNAPSE_VENV)/.installed:
	@$(PYTHON) -m venv $(SYNAPSE_VENV)
	@$(SYNAPSE_VENV)/bin/pip install $(PIP_QUIET) --upgrade pip
	@$(SYNAPSE_VENV)/bin/pip install $(PIP_QUIET) matrix-synapse >&2
	@touch $@

clean:
	rm -rf $(VENV) $(SYNAPSE_VENV) var .pytest_cache .ruff_cache
