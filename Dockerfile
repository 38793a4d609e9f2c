# edge: camera streaming server, as a small non-root image on Debian's Python 3.11.
#
#   docker compose up -d                      (see compose.yaml; a camera at /dev/video0)
#   docker buildx build --platform linux/arm64,linux/amd64 -t edge .
#
# Nothing below depends on the architecture: Debian ships python3 for both, and PyPI has
# manylinux wheels of every pin in deploy/requirements.txt for x86_64 and aarch64, so the same
# file builds both images (natively, or under QEMU with buildx).
#
# No "# syntax=" line on purpose: it would make BuildKit pull a frontend image from a registry.

# ---- base: Debian's python3 and the unprivileged user; shared by both stages below ----------
FROM debian:bookworm-slim AS base

# Versions are not pinned: a bookworm point release removes the previous versions from the
# archive, which would break every build. What must not drift (the Python packages) is pinned
# exactly in deploy/requirements.txt.
# The user is in the `video` group so it may open /dev/video* (compose adds the host's video
# group too); a fixed UID keeps file ownership predictable across rebuilds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --no-log-init --uid 10001 --user-group --groups video \
        --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin edge

# ---- build: a venv with the pinned wheels (pip, python3-venv and strip stay in this stage) ---
FROM base AS build

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv binutils \
    && rm -rf /var/lib/apt/lists/*

# Where a machine reaches PyPI through a mirror, these pass its settings to pip for this build
# only; all are empty by default (pip's own defaults). Never put hosts or certificates here.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG PIP_DEFAULT_TIMEOUT=60

# Only the pins are copied first: this layer is rebuilt when they change, not when the code does.
COPY deploy/requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
        --requirement /tmp/requirements.txt \
    && /opt/venv/bin/pip uninstall --yes --quiet pip setuptools

# About 37 MB less, same behaviour: the packages' own test suites and type stubs are never used
# at run time, and the Cython/Rust extension modules below ship with debug information. The
# libraries auditwheel repaired (numpy's and OpenCV's, and the modules linked to them) are left
# alone: strip can damage files that patchelf rewrote.
# numpy's f2py and distutils (about 5 MB) build Fortran and C extensions; numpy imports them
# only when asked for by name, which nothing here does.
RUN find /opt/venv -depth -type d -name tests -exec rm -rf {} + \
    && find /opt/venv -name '*.pyi' -delete \
    && rm -rf /opt/venv/lib/python3*/site-packages/numpy/f2py /opt/venv/lib/python3*/site-packages/numpy/distutils \
    && find /opt/venv/lib/python3*/site-packages \( -path '*/uvloop/*' -o -path '*/yaml/*' \
        -o -path '*/httptools/*' -o -path '*/websockets/*' -o -path '*/watchfiles/*' \) \
        -name '*.so' -exec strip --strip-debug {} +

# ---- runtime ---------------------------------------------------------------------------------
FROM base

# EDGE_HOST/EDGE_PORT override server.host/server.port of the config file (edge/__main__.py), so
# the same config/edge.yaml serves 127.0.0.1 on the host (`make run`) and 0.0.0.0:8080 here.
# The config is read from /config/edge.yaml: compose mounts ./config there read-only; the copy
# baked in below makes a plain `docker run` work too.
# The root filesystem is read-only in compose, so Python must not try to write .pyc files
# (everything is compiled at build time instead).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    EDGE_CONFIG=/config/edge.yaml \
    EDGE_HOST=0.0.0.0 \
    EDGE_PORT=8080

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
COPY deploy/healthcheck.py /app/healthcheck.py
COPY config/edge.yaml /config/edge.yaml
COPY edge/ /app/edge/
# Fails the build (not the first start on a device) if a native library of OpenCV, numpy or
# uvloop (or FFmpeg's, which PyAV bundles) is missing from the slim base.
RUN python -m compileall -q /app \
    && python -c "import cv2, numpy, uvloop, httptools, yaml, av, edge.web.app, edge.server; print('cv2', cv2.__version__)"

# A numeric UID (so `runAsNonRoot`-style checks can verify it) and no explicit group: with
# "UID:GID" the engine would drop the supplementary `video` group from /etc/group.
USER 10001
EXPOSE 8080

# Standard library only (no curl in the image); asks 127.0.0.1:$EDGE_PORT/healthz.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/app/healthcheck.py"]

# Exec form: python is the process that receives SIGTERM from `docker stop` (compose's
# `init: true` puts a tiny init in front that forwards it), and edge exits 0 within ~2 s.
# Arguments after the image name go to edge, e.g. `docker run edge --check-config /config/edge.yaml`.
ENTRYPOINT ["python", "-m", "edge"]
