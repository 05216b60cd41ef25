# The whole chain on a fresh machine: `make all`. The tests: `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8866
export DO_NOT_TRACK := 1

.PHONY: all install data train retrain status dashboard test test-fast lint bench report ui clean

all: install data train status dashboard

$(BIN)/mushroom: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dask]'
	@touch $@

install: $(BIN)/mushroom

data: install
	$(BIN)/mushroom data

# trains the first model once; `make retrain` (or `mushroom train`) trains a new version on demand
train: install
	@if [ -f artifacts/champion.json ]; then echo "a champion exists (make retrain to train a new version)"; \
	else $(BIN)/mushroom train; fi

retrain: install
	$(BIN)/mushroom train

status: install
	$(BIN)/mushroom status

dashboard: install
	$(BIN)/mushroom dashboard --port $(PORT)

report: install
	$(BIN)/mushroom report

ui: install
	$(BIN)/mushroom ui

# every tier (what CI runs): unit, data, model, system
test: install
	$(BIN)/python -m pytest -q

# the unit tier only: synthetic frames, no trained home (well under 2 minutes)
test-fast: install
	$(BIN)/python -m pytest -q tests/unit

lint: install
	$(BIN)/lint-imports
	$(BIN)/ruff check mushroom_lib

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf artifacts reports data/mushrooms.csv data/ref_data.csv data/split.json data/prod_data*.csv
