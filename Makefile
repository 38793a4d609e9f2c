# `make run` serves config/edge.yaml; `make test` runs the whole suite on the virtual camera.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test test-docker lint bench clean

install: $(STAMP)

# Re-installs only when the pins change, so `make run` / `make test` stay quick.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

run: install
	$(PY) -m edge --config $${EDGE_CONFIG:-config/edge.yaml}

test: install
	$(PY) -m ruff check edge tests benchmarks deploy
	$(PY) -m pytest

# Builds the image on a private Docker engine and checks that it serves (needs root; CI runs it).
test-docker: install
	bash tests/docker/run.sh

lint: install
	$(PY) -m ruff check edge tests benchmarks deploy
	$(PY) -m ruff format --check edge tests benchmarks deploy

bench: install
	$(PY) benchmarks/bench.py

clean:
	rm -rf $(VENV) build *.egg-info
