# `make run` serves config/edge.yaml; `make test` runs the whole suite on the virtual camera.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: install install-test run test test-docker lint bench clean soak

install: $(STAMP)

# Re-installs only when the pins change, so `make run` / `make test` stay quick. `make run` needs
# the runtime only (a Pi should not download Playwright, hadolint and a compose binary it never
# runs); the test tools come with the first `make test`, `make lint` or `make bench`.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	touch $(STAMP)

install-test: $(TEST_STAMP)

$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(TEST_STAMP)

run: install
	$(PY) -m edge --config $${EDGE_CONFIG:-config/edge.yaml}

test: install-test
	$(PY) -m ruff check edge tests benchmarks deploy
	$(PY) -m mypy
	$(PY) -m pytest

# Builds the image on a private Docker engine and checks that it serves (needs root; CI runs it).
test-docker: install-test
	bash tests/docker/run.sh

lint: install-test
	$(PY) -m ruff check edge tests benchmarks deploy
	$(PY) -m ruff format --check edge tests benchmarks deploy
	$(PY) -m mypy

# Load benchmark, edge beside the floor (benchmarks/floor.py) under the same loads (~6 min), then
# CPU per camera source (~16 min); both need ffmpeg. Results and summary.md in benchmarks/results/.
bench: install-test
	$(PY) benchmarks/bench.py
	$(PY) benchmarks/sources.py

# 20-minute soak: 200 churning clients, the camera's source failing every 30 s; prints the figure
# table. `make test` runs the same test for 120 s (EDGE_SOAK_SECONDS overrides the length).
soak: install-test
	EDGE_SOAK_SECONDS=$${EDGE_SOAK_SECONDS:-1200} $(PY) -m pytest -s tests/test_soak.py

clean:
	rm -rf $(VENV) build *.egg-info
