# make install: .venv with the project (idempotent); make run: the default job;
# make check: lint + the fast tier (no test that starts a process); make test: lint + every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run check test test-tf220 lint format bench clean

install: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

run: install
	$(PY) -m trainer --model_dir=runs/default

lint: install
	$(VENV)/bin/ruff check trainer launch tests bench
	$(VENV)/bin/ruff format --check trainer launch tests bench

format: install
	$(VENV)/bin/ruff format trainer launch tests bench
	$(VENV)/bin/ruff check --fix trainer launch tests bench

check: install lint
	$(PY) -m pytest -q -m "not e2e" tests

test: install lint
	$(PY) -m pytest -q tests

# The compatibility tier: the oldest TensorFlow setup.py accepts (2.20, the newest with a TPU build)
# in a venv of its own, running the tests whose claims depend on TensorFlow's numerics and formats.
TF220_VENV := $(VENV)/tf220
TF220_TESTS := tests/test_parity.py tests/test_resume.py tests/test_metrics.py tests/test_export.py

$(TF220_VENV)/.installed: setup.py
	test -x $(TF220_VENV)/bin/python || $(PYTHON) -m venv $(TF220_VENV)
	$(TF220_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TF220_VENV)/bin/python -m pip install --quiet -e ".[test]" "tensorflow==2.20.*" "tensorboard==2.20.*"
	touch $@

test-tf220: $(TF220_VENV)/.installed
	$(TF220_VENV)/bin/python -c "import tensorflow as tf; assert tf.__version__.startswith('2.20.'), tf.__version__"
	$(TF220_VENV)/bin/python -m pytest -q $(TF220_TESTS)

bench: install
	set -e; for script in bench/*.py; do echo "== $$script"; $(PY) $$script; done

clean:
	rm -rf $(VENV) runs
