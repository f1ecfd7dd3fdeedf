# make install: .venv with the project (idempotent); make run: the default job;
# make check: lint + the fast tier (no test that starts a process); make test: lint + every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run check test lint format bench clean

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

bench: install
	$(PY) bench/step_throughput.py

clean:
	rm -rf $(VENV) runs
