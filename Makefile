# The two commands of the README do all set-up on a fresh machine with Python 3.11:
#   make demo   runs the main demo end to end
#   make test   runs the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
comma := ,
PLUGINS := $(sort $(wildcard plugins/*))
PYTEST_WORKERS ?= 2
BENCH_VENV ?= .venv-bench-baselines
EVIDENTLY_VENV ?= .venv-bench-evidently
# conveyor-mlflow's tests start a real `mlflow server` from this virtualenv (make mlflow-server).
MLFLOW_VENV ?= .venv-mlflow-server
export CONVEYOR_MLFLOW_SERVER_PYTHON ?= $(abspath $(MLFLOW_VENV))/bin/python
BENCH_PINS := numpy|pandas|scikit-learn|scipy|pyarrow|joblib|threadpoolctl
BENCH_KEDRO := kedro==1.7.0

.PHONY: install browser postgres wrk mlflow-server test test-fast demo bench lint lock clean

install: $(VENV)/.installed

# conveyor-sklearn with its extras: [onnx] (skl2onnx, onnxruntime) for `conveyor export`, and
# [lightgbm] and [xgboost] for the `model=lightgbm` and `model=xgboost` options; their tests need
# them all.
$(VENV)/.installed: pyproject.toml $(wildcard plugins/*/pyproject.toml) requirements/lock.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements/lock.txt -e ".[sweep,dev,demo,postgres,s3]" \
		$(foreach p,$(PLUGINS),-e "$(p)$(if $(filter plugins/sklearn,$(p)),[onnx$(comma)lightgbm$(comma)xgboost])")
	touch $@

# The browser tests (reports, `conveyor ui`) drive Debian's Chromium headless; a test tool's own
# browser download does not work here. Installing it needs root (or sudo) and Debian's packages.
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
		echo "installing Debian's chromium for the browser tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		$$SUDO apt-get install -y -qq chromium >/dev/null; }

# The store tests start a real PostgreSQL server (conveyor.store.postgres_server: initdb in a
# temporary folder, run as the `postgres` user under root): Debian's postgresql package. Its
# install would create and START a cluster on port 5432, left running in CI: a policy-rc.d
# saying "exit 101" (no service starts) is in place during the install, unless one already is.
POSTGRES_BIN ?= /usr/lib/postgresql/*/bin
POLICY_RC_D ?= /usr/sbin/policy-rc.d
APT_GET ?= apt-get
postgres:
	@{ command -v initdb >/dev/null || ls $(POSTGRES_BIN)/initdb >/dev/null 2>&1; } || { \
		echo "installing Debian's postgresql for the store tests (its service not started)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); made=; \
		if [ ! -e $(POLICY_RC_D) ]; then printf '#!/bin/sh\nexit 101\n' | $$SUDO tee \
			$(POLICY_RC_D) >/dev/null && $$SUDO chmod 755 $(POLICY_RC_D) && made=1; fi; \
		$$SUDO $(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive \
		$$SUDO $(APT_GET) install -y -qq postgresql >/dev/null; status=$$?; \
		[ -z "$$made" ] || $$SUDO rm -f $(POLICY_RC_D); exit $$status; }

# `make bench` loads the HTTP service with wrk (Debian's package), like the browser above.
wrk:
	@command -v wrk >/dev/null || { \
		echo "installing Debian's wrk for the serving benchmark"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		$$SUDO apt-get install -y -qq wrk >/dev/null; }

# The full mlflow (the server) pins pandas < 3, which the lock does not allow: a virtualenv of
# its own, pinned in plugins/mlflow/tests/server-requirements.txt.
mlflow-server: $(MLFLOW_VENV)/.installed
$(MLFLOW_VENV)/.installed: plugins/mlflow/tests/server-requirements.txt
	rm -rf $(MLFLOW_VENV)
	$(PYTHON) -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/python -m pip install -q --upgrade pip
	$(MLFLOW_VENV)/bin/python -m pip install -q -r plugins/mlflow/tests/server-requirements.txt
	touch $@

test: install browser postgres mlflow-server
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q --durations=40

test-fast: install browser postgres mlflow-server
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q -m "not slow"

demo: install
	PATH="$(abspath $(BIN)):$$PATH" bash projects/demo.sh

# The benchmark suite: every figure of the performance issue against its baseline, measured in
# the same run (tests/bench/run.py; results in bench-results/). BENCH_ARGS=--quick checks it fast.
bench: install wrk $(BENCH_VENV)/.installed $(EVIDENTLY_VENV)/.installed
	$(BIN)/python tests/bench/run.py --baselines $(BENCH_VENV) $(BENCH_ARGS)
	$(BIN)/python tests/bench/bench_validate.py --repeat 5 --output bench-results/validate.json
	$(BIN)/python tests/bench/bench_dvc.py --repeat 3 --json bench-results/dvc.json
	$(BIN)/python tests/bench/bench_drift.py --repeat 3 --output bench-results/drift.json \
		--evidently-python $(EVIDENTLY_VENV)/bin/python
	$(BIN)/python tests/bench/bench_ui.py --runs 5000 --repeat 7 --output bench-results/ui.json
	$(BIN)/python tests/bench/bench_store.py --runs 5000 --repeat 5 --json bench-results/store.json
	$(BIN)/python tests/bench/bench_serve.py --repeat 2 --json bench-results/serve.json
	$(BIN)/python tests/bench/bench_predict.py --rows 1000000 --big-rows 10000000 --json bench-results/predict.json
	$(BIN)/python tests/bench/bench_recommend.py --repeat 2 --json bench-results/recommend.json
	$(BIN)/python tests/bench/bench_batch_recommend.py --repeat 3 --json bench-results/batch_recommend.json
	$(BIN)/python tests/bench/bench_streams.py --output bench-results/streams.json
	$(BIN)/python tests/bench/bench_threads.py --repeat 3 --output bench-results/threads.json
	$(BIN)/python tests/bench/bench_artifacts.py --repeat 3 --json bench-results/artifacts.json
	$(BIN)/python tests/bench/bench_ray_sweep.py --jobs 8 --output bench-results/ray_sweep.json
	$(BIN)/python tests/bench/bench_ray_outputs.py --mb 200 --output bench-results/ray_outputs.json

# Evidently, the context figure of the drift benchmark, needs pandas < 3: a virtualenv of its own.
# Where it does not install, the benchmark says so and goes on.
$(EVIDENTLY_VENV)/.installed: tests/bench/evidently_drift.py
	rm -rf $(EVIDENTLY_VENV)
	$(PYTHON) -m venv $(EVIDENTLY_VENV)
	$(EVIDENTLY_VENV)/bin/python -m pip install -q --upgrade pip
	$(EVIDENTLY_VENV)/bin/python -m pip install -q "evidently>=0.4" "pandas<3" pyarrow \
		|| echo "Evidently does not install here: the drift benchmark skips it"
	touch $@

# The baselines' tools (DVC, Kedro) get a virtualenv of their own, so they never touch .venv or
# its lock; the libraries doing the actual work are pinned to the lock's versions.
$(BENCH_VENV)/.installed: tests/bench/baselines.txt requirements/lock.txt
	rm -rf $(BENCH_VENV)
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	grep -iE '^($(BENCH_PINS))==' requirements/lock.txt > $(BENCH_VENV)/pins.txt
	$(BENCH_VENV)/bin/python -m pip install -q -r tests/bench/baselines.txt -r $(BENCH_VENV)/pins.txt
	$(BENCH_VENV)/bin/python -m pip install -q -c $(BENCH_VENV)/pins.txt $(BENCH_KEDRO) \
		|| echo "warning: $(BENCH_KEDRO) did not install: make bench reports the issue's stated Kedro figure" >&2
	touch $@

lint: install
	$(BIN)/ruff check .

# The hook reference (docs/reference/hooks.md), generated from the hookspecs' docstrings.
.PHONY: docs
docs: install
	$(BIN)/python tools/gen_hook_reference.py

# Refresh the lock of what was tested (run after changing dependencies).
lock: install
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > requirements/lock.txt

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(EVIDENTLY_VENV) $(MLFLOW_VENV) .pytest_cache bench-results
