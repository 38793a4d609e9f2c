"""The running edge container that tests/docker/run.sh started (`make test-docker`).

run.sh provisions (private engine, stand-in base image, build, `docker compose up --wait`,
teardown) and then runs this file with the venv's pytest; everything it asserts is here. What
it needs comes from run.sh through the environment:

    EDGE_CI_PORT      edge's port on 127.0.0.1 (host network)
    EDGE_CI_CID       the edge container's id
    EDGE_CI_DOCKER    the docker client (DOCKER_HOST and DOCKER_CONFIG name the private engine)
    EDGE_CI_COMPOSE   the compose command line, shell-quoted (`docker compose -f ... -f ...`),
                      run from the repository root
    EDGE_CI_MAX_IMAGE_MB  optional: the amd64 image size limit in MB (default 470)

Without them the module skips with that reason; a plain `pytest` does not collect it at all
(tests/docker/conftest.py).

The HTTP checks go to 127.0.0.1 only, with the suite's own raw clients (tests/support/).
The last test stops the container (`docker compose stop`, timed), checks its exit code and log,
and runs `docker compose down`: pytest runs a module's tests in the order they are written, so
it stays last.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.http import fetch
from tests.support.jpeg import decode_jpeg
from tests.support.mjpeg import MjpegStream
from tests.support.process import HOST, REPO_ROOT
from tests.support.websocket import RawWebSocket

_NEEDED = ("EDGE_CI_PORT", "EDGE_CI_CID", "EDGE_CI_DOCKER", "EDGE_CI_COMPOSE")
_unset = [name for name in _NEEDED if not os.environ.get(name)]
if _unset:
    pytest.skip(
        f"needs the container tests/docker/run.sh starts (run `make test-docker` as root); {', '.join(_unset)} not set",
        allow_module_level=True,
    )

PORT = int(os.environ["EDGE_CI_PORT"])
CID = os.environ["EDGE_CI_CID"]
DOCKER = os.environ["EDGE_CI_DOCKER"]
COMPOSE = shlex.split(os.environ["EDGE_CI_COMPOSE"])
# 352 MB measured with pydantic (config models: about 10 MB), before PyAV, whose wheel bundles
# FFmpeg's libraries (about 104 MB installed: H.264 demuxing, muxing, libx264); OpenCV and numpy
# are most of the rest. PyAV's own modules are not stripped: auditwheel rewrote them with patchelf.
MAX_IMAGE_MB = int(os.environ.get("EDGE_CI_MAX_IMAGE_MB") or 470)
BASE = f"http://{HOST}:{PORT}"
STOP_GRACE = 10  # compose.yaml's stop_grace_period, passed to `compose stop -t`
MAX_STOP_S = 5.0  # edge exits within about 2 s of SIGTERM

Note = Callable[[str], None]


def run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a docker/compose command from the repository root; stdout and stderr together."""
    return subprocess.run(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, cwd=REPO_ROOT
    )


def docker(*args: str, timeout: float = 60) -> str:
    """`docker ARGS...`, which must succeed; its output, stripped."""
    proc = run([DOCKER, *args], timeout)
    assert proc.returncode == 0, f"docker {shlex.join(args)} exited {proc.returncode}:\n{proc.stdout}"
    return proc.stdout.strip()


def container_info(fmt: str) -> str:
    """`docker inspect -f FMT` of the edge container."""
    return docker("inspect", "-f", fmt, CID)


# --------------------------------------------------------------------------------------------
# The container as the engine sees it
# --------------------------------------------------------------------------------------------


def test_running_and_healthy(note: Note) -> None:
    state: dict[str, Any] = json.loads(container_info("{{json .State}}"))
    assert state["Running"], f"the container is not running: {state}"
    health = state.get("Health") or {}
    assert health.get("Status") == "healthy", f"health: {health}"
    image = container_info("{{.Config.Image}}")
    machine = docker("exec", CID, "uname", "-m")
    note(f"health: {health['Status']} (image {image}, machine {machine})")


def _uids(pid: int) -> set[int]:
    """Real, effective, saved and filesystem uid of a host process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return {int(x) for x in line.split()[1:]}
    raise AssertionError(f"no Uid line for process {pid}")


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ")".
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(entry.name))
    return kids


def test_not_root(note: Note) -> None:
    uid = docker("exec", CID, "id", "-u")
    assert uid != "0", "the container runs as root"
    # The processes as the host sees them: the init (init: true) and the server, its child.
    init = int(container_info("{{.State.Pid}}"))
    server = _children(init)
    assert server, f"the init (host pid {init}) has no child: where is the server?"
    host_uids = {pid: _uids(pid) for pid in [init, *server]}
    assert all(0 not in uids for uids in host_uids.values()), f"a process runs as root on the host: {host_uids}"
    note(f"user: uid {uid} in the container; on the host: {sorted(set().union(*host_uids.values()))}")


def test_video_group(note: Note) -> None:
    groups = docker("exec", CID, "id", "-Gn").split()
    assert "video" in groups, f"the container user is not in the video group: {groups}"
    # The image alone too (plain `docker run`, without compose's group_add).
    image = container_info("{{.Config.Image}}")
    image_groups = docker("run", "--rm", "--network", "none", "--entrypoint", "id", image, "-Gn").split()
    assert "video" in image_groups, f"the image's user is not in the video group: {image_groups}"
    note(f"groups: {' '.join(groups)} (the image alone: {' '.join(image_groups)})")


def test_read_only_root(note: Note) -> None:
    assert container_info("{{.HostConfig.ReadonlyRootfs}}") == "true", "root filesystem not read-only"
    probe = run([DOCKER, "exec", CID, "touch", "/app/probe"])
    assert probe.returncode != 0, "could write /app/probe in the container"
    assert "Read-only file system" in probe.stdout, f"unexpected error writing /app: {probe.stdout}"
    docker("exec", CID, "sh", "-c", "touch /tmp/probe && rm /tmp/probe")
    note("root filesystem read-only, /tmp writable")


def test_image_size(note: Note) -> None:
    image = container_info("{{.Config.Image}}")
    size_mb = int(docker("image", "inspect", "-f", "{{.Size}}", image)) // 1_000_000
    arch = docker("image", "inspect", "-f", "{{.Architecture}}", image)
    note(f"image {image}: {size_mb} MB ({arch}; the limit, for amd64: {MAX_IMAGE_MB} MB)")
    # The size target is for amd64 (arm64 images are a little smaller).
    if arch == "amd64":
        assert size_mb <= MAX_IMAGE_MB, f"image is {size_mb} MB, over {MAX_IMAGE_MB} MB"


# --------------------------------------------------------------------------------------------
# HTTP, through 127.0.0.1
# --------------------------------------------------------------------------------------------


def test_healthz() -> None:
    r = fetch(BASE + "/healthz")
    assert r.status == 200, f"/healthz answered {r.status}"


def test_viewer_page() -> None:
    r = fetch(BASE + "/")
    assert r.status == 200, f"/ answered {r.status}"
    assert "text/html" in r.headers.get("content-type", ""), r.headers


def test_status_virtual_fallback(note: Note) -> None:
    """There is no camera in CI: `source: auto` fell back to the virtual camera."""
    r = fetch(BASE + "/api/status")
    assert r.status == 200, f"/api/status answered {r.status}"
    status = r.json()
    cam = status["cameras"][0]
    assert cam["source"] == "virtual", f"expected the virtual-camera fallback, got {cam['source']!r}"
    note(f"/api/status: version {status['version']}, {cam['name']} source {cam['source']}, state {cam['state']}")


def test_snapshot_decodes(note: Note) -> None:
    r = fetch(BASE + "/snapshot")
    assert r.status == 200 and r.body, f"/snapshot answered {r.status}"
    img = decode_jpeg(r.body)
    note(f"/snapshot: {img.shape[1]}x{img.shape[0]} JPEG, X-Timestamp {r.headers.get('x-timestamp')}")


def test_mjpeg_frames(note: Note) -> None:
    with MjpegStream(HOST, PORT, "/stream", timeout=10) as stream:
        assert stream.head is not None and stream.head.status == 200, "MJPEG stream did not answer 200"
        t0 = time.monotonic()
        parts = stream.read_parts(5)
        took = time.monotonic() - t0
    decode_jpeg(parts[-1].jpeg)
    note(f"/stream: 5 complete frames in {took:.2f}s")


def test_websocket_frame(note: Note) -> None:
    ws = RawWebSocket(HOST, PORT, "/ws", timeout=10)
    try:
        hello = ws.recv_json()
        assert hello.get("type") == "hello", hello
        frame = ws.recv_binary()
    finally:
        ws.close()
    decode_jpeg(frame.jpeg)
    note(f"/ws: frame seq {frame.seq}, {len(frame.jpeg)} bytes")


# --------------------------------------------------------------------------------------------
# Stop: keep this last (it stops and removes the container)
# --------------------------------------------------------------------------------------------


def test_stop_is_quick_and_clean(note: Note) -> None:
    """`compose stop` (SIGTERM through the init) ends edge with 0 within MAX_STOP_S; then `down`.

    `stop` rather than a timed `down`: the stopped container keeps its exit code and log for
    `docker inspect` and `docker logs`, so nothing has to watch it from the background.
    """
    t0 = time.monotonic()
    stop = run([*COMPOSE, "stop", "-t", str(STOP_GRACE)])
    took = time.monotonic() - t0
    state: dict[str, Any] = json.loads(container_info("{{json .State}}"))
    log = run([DOCKER, "logs", CID]).stdout
    t0 = time.monotonic()
    down = run([*COMPOSE, "down", "-t", str(STOP_GRACE)])
    down_took = time.monotonic() - t0
    note(
        f"compose stop -t {STOP_GRACE}: {took:.2f}s, exit code {state['ExitCode']}; then compose down: {down_took:.2f}s"
    )

    assert stop.returncode == 0, f"compose stop failed:\n{stop.stdout}"
    assert not state["Running"], f"still running after compose stop: {state}"
    tail = "\n".join(log.splitlines()[-30:])
    assert state["ExitCode"] == 0, f"edge exited with {state['ExitCode']}, expected 0; its log ends:\n{tail}"
    assert took <= MAX_STOP_S, f"compose stop took {took:.2f}s (> {MAX_STOP_S} s)"
    assert "Traceback" not in log, f"the container log has a traceback:\n{log}"
    assert "listening on http://127.0.0.1:" in log, f"no listening line in the log:\n{tail}"
    assert down.returncode == 0, f"compose down failed:\n{down.stdout}"
