# The two commands of the README do all set-up on a fresh machine with Python 3.11:
#   make demo   runs the main demo end to end
#   make test   runs the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PLUGINS := $(sort $(wildcard plugins/*))
PYTEST_WORKERS ?= 2

.PHONY: install test test-fast demo bench lint lock clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(wildcard plugins/*/pyproject.toml) requirements/lock.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements/lock.txt -e ".[sweep,dev]" \
		$(foreach p,$(PLUGINS),-e $(p))
	touch $@

test: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q

test-fast: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q -m "not slow"

demo: install
	PATH="$(abspath $(BIN)):$$PATH" bash projects/demo.sh

bench: install
	$(BIN)/python -m pip install -q -c requirements/lock.txt dvc kedro
	$(BIN)/python tests/bench/run.py

lint: install
	$(BIN)/ruff check .

# Refresh the lock of what was tested (run after changing dependencies).
lock: install
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > requirements/lock.txt

clean:
	rm -rf $(VENV) .pytest_cache
