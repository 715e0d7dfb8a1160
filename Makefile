# tickwire: every target creates .venv/ on first use and installs the project into it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench soak lint format clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tickwire demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	-$(PY) -m pip install --quiet -e '.[dev,anchors]'
	$(PY) -m benchmarks.run

# Crash recovery soak: SIGKILL mid-order, restart from the journal, reconcile (SEEDS runs).
SEEDS ?= 500
soak: $(STAMP)
	TICKWIRE_CRASH_SEEDS=$(SEEDS) $(PY) -m pytest -q tests/test_crash_recovery.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks .hypothesis .ruff_cache
