# wattledger: the two set-up commands.
#   make demo   installs everything (Python venv + npm packages) and runs the simulation demo
#   make test   installs everything and runs lint, type checks and the whole test suite
# Only python3 (3.11+) and node/npm are needed on the machine.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: demo test lint setup clean bench

setup: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): pyproject.toml scripts/slither-requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps -r scripts/slither-requirements.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(BIN)/wattledger simulate

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# Every benchmark, one after another (simulated_day.py alone takes about six minutes); each prints
# ratios measured in the same run and a last line to quote.
bench: setup
	$(BIN)/python bench/clearing.py
	$(BIN)/python bench/gas.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/settle.py
	$(BIN)/python bench/simulated_day.py
	$(BIN)/python bench/simulated_year.py
	$(BIN)/python bench/grid_day.py
	$(BIN)/python bench/sweep.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis
