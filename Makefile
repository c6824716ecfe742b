# Two commands for a new user: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.dacn-installed

.PHONY: demo test lint benchmarks install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall only when the project's metadata changes, so the second run is fast.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev,torch]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dacn demo

# The slowest tests are listed after the run, so a suite that grows past its time shows where.
test: $(STAMP)
	$(PY) -m pytest -q --durations=20

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Each benchmark is its own script (see BENCHMARKS.md for the commands); this rebuilds BENCHMARKS.md from
# their result files after installing what only the benchmarks need.
benchmarks: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,torch,bench]'
	$(PY) -m bench.collect

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
