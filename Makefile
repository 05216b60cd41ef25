# The whole chain on a fresh machine: `make all`. The tests: `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8866
EXTRAS ?= test,dask,deploy,bench
# one wheelhouse for the wheel test, the image and any offline install; IMAGE_PYTHON is the local base's
# python3 (Debian bookworm's), whose older patch level some wheels' Requires-Python tells apart
WHEELHOUSE   ?= build/wheelhouse
IMAGE_PYTHON ?= 3.11.2
BASE_IMAGE   ?= localhost/mushroom-base:bookworm
IMAGE        ?= localhost/mushroom-workbench:latest
DB_IMAGE     ?= localhost/mushroom-workbench-db:latest
export DO_NOT_TRACK := 1

.PHONY: all install data train retrain status dashboard test test-fast lint bench report ui clean wheelhouse \
        base-image image test-container lint-container

all: install data train status dashboard

$(BIN)/mushroom: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
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

# every tier (what CI runs): unit, data, model, system (the wheel test installs from the wheelhouse)
test: install wheelhouse
	$(BIN)/python -m pytest -q

# the unit tier only: synthetic frames, no trained home (well under 2 minutes)
test-fast: install
	$(BIN)/python -m pytest -q tests/unit

lint: install
	$(BIN)/lint-imports
	$(BIN)/ruff check mushroom_lib

bench: install
	$(BIN)/python benchmarks/run_all.py

# every dependency as a wheel (built once; pip's cache makes it quick after `make install`)
$(WHEELHOUSE)/.complete: pyproject.toml $(BIN)/mushroom
	rm -rf $(WHEELHOUSE)
	$(BIN)/python -m pip wheel --quiet --wheel-dir $(WHEELHOUSE) '.[dask]' setuptools wheel pip
	$(BIN)/python -m pip download --quiet --only-binary=:all: --python-version $(IMAGE_PYTHON) \
	  --dest $(WHEELHOUSE) '.[dask]' setuptools wheel
	rm -f $(WHEELHOUSE)/mushroom_workbench-*
	@touch $@

wheelhouse: $(WHEELHOUSE)/.complete

# the container image, offline, from a base made here (no registry needed; docs/deployment.md)
base-image:
	podman image exists $(BASE_IMAGE) || deploy/base-image.sh $(BASE_IMAGE)

image: wheelhouse base-image
	podman build --format docker --network none --build-arg BASE=$(BASE_IMAGE) \
	  --build-arg PIP_INSTALL_ARGS=--no-index -t $(IMAGE) -f Containerfile .
	podman build --format docker --build-arg BASE=$(BASE_IMAGE) -t $(DB_IMAGE) deploy/postgres

lint-container: install
	$(BIN)/hadolint Containerfile deploy/postgres/Containerfile

test-container: install wheelhouse
	bash deploy/test-container.sh

clean:
	rm -rf $(WHEELHOUSE) artifacts reports data/mushrooms.csv data/ref_data.csv data/split.json data/prod_data*.csv
