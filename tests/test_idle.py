"""Idle cameras (`idle_after`) and the measured fps at start-up, on real servers.

Without a stream or a snapshot for `idle_after` seconds a camera idles: status "idle" true,
frames_captured frozen, still ready. A snapshot or a new stream wakes it and gets a frame captured
after the request was sent (not the stale one from before the camera idled); an open stream keeps
it awake; idle_after counts from the last viewer leaving. Checked for the virtual camera and for
an MJPEG file passed through, on one server (each test uses its own camera or waits for it to
idle first).

The wake-up latencies are printed (run with -s to see them).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.support.config import virtual_cam
from tests.support.frames import BackgroundReader, mjpeg_reader
from tests.support.http import fetch, http_client
from tests.support.jpeg import decode_jpeg
from tests.support.mjpeg import MjpegStream
from tests.support.process import EdgeServer, StartServer
from tests.support.programs import requires
from tests.support.sources import mjpeg_clip
from tests.support.status import camera_status, get_status, wait_all_cameras, wait_status

IDLE_AFTER = 1
FPS = 15
SLEEPY = ["virt", "file"]  # cameras with idle_after: 1


@pytest.fixture(scope="module")
def mjpeg_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mjpeg_clip(tmp_path_factory.mktemp("mjpeg") / "testsrc.avi", 2, (320, 240), FPS, quality=5)


@pytest.fixture(scope="module")
def server(start_module_server: StartServer, mjpeg_file: Path) -> EdgeServer:
    cameras = [
        {**virtual_cam("virt", 320, 240, FPS), "idle_after": IDLE_AFTER},
        {"name": "file", "source": str(mjpeg_file), "fps": FPS, "idle_after": IDLE_AFTER},
        {**virtual_cam("awake", 160, 120, FPS), "idle_after": 0},
    ]
    srv = start_module_server(cameras=cameras)
    wait_all_cameras(srv, "streaming", 15)
    return srv


def cam(server: EdgeServer, name: str) -> dict:
    return camera_status(get_status(server), name)


def wait_idle(server: EdgeServer, name: str, timeout: float = IDLE_AFTER + 4) -> dict:
    st = wait_status(server, lambda st: camera_status(st, name)["idle"], timeout, f"{name} idle")
    return camera_status(st, name)


def metric(server: EdgeServer, family: str, name: str) -> float:
    body = fetch(server.url + "/metrics").body
    assert body is not None
    m = re.search(rf'^{family}\{{camera="{name}"\}} (\S+)$', body.decode(), re.M)
    assert m, f"no {family} for camera {name} in /metrics"
    return float(m.group(1))


@requires("ffmpeg")
@pytest.mark.parametrize("name", SLEEPY)
def test_camera_idles_without_viewers(server: EdgeServer, name: str) -> None:
    status = wait_idle(server, name)
    assert status["state"] == "streaming"  # idling is not a source problem
    before = status["frames_captured"]
    time.sleep(1.0)  # the measurement window: nothing may be captured in it
    after = cam(server, name)
    assert after["idle"] and after["frames_captured"] == before, (before, after["frames_captured"])
    ready = fetch(server.url + "/readyz")
    assert ready.status == 200, ready.body
    assert metric(server, "edge_camera_idle", name) == 1
    assert f"{name}: idle: no viewer for {IDLE_AFTER} s; not processing frames" in server.log_text()
    wait_status(server, lambda st: camera_status(st, name)["fps"] == 0, 3, f"{name} fps 0 while idle")


@requires("ffmpeg")
@pytest.mark.parametrize("name", SLEEPY)
def test_snapshot_wakes_an_idle_camera_with_a_fresh_frame(server: EdgeServer, name: str) -> None:
    wait_idle(server, name)
    sent = time.time()
    snap = fetch(f"{server.url}/cameras/{name}/snapshot")
    received = time.time()
    assert snap.status == 200 and snap.body is not None
    captured = float(snap.headers["X-Timestamp"])
    print(
        f"\n[wake-up] {name} snapshot: request -> response {1000 * (received - sent):.0f} ms, "
        f"request -> frame captured {1000 * (captured - sent):.0f} ms"
    )
    assert captured > sent, f"stale frame: captured {sent - captured:.3f} s before the request"
    assert received - sent < 1.0, f"the wake-up snapshot took {received - sent:.2f} s"
    assert "X-Placeholder" not in snap.headers
    decode_jpeg(snap.body)
    assert cam(server, name)["idle"] is False
    # A snapshot keeps the camera awake only for idle_after: then it idles again.
    wait_idle(server, name)


@requires("ffmpeg")
@pytest.mark.parametrize("name", SLEEPY)
def test_stream_wakes_an_idle_camera_and_keeps_it_awake(server: EdgeServer, name: str) -> None:
    wait_idle(server, name)
    sent = time.time()
    stream = MjpegStream(server.host, server.port, f"/cameras/{name}/stream")
    try:
        first = stream.read_part()
        print(
            f"\n[wake-up] {name} stream: request -> first frame received "
            f"{1000 * (first.received_at - sent):.0f} ms, request -> frame captured "
            f"{1000 * (first.timestamp - sent):.0f} ms"
        )
        assert first.timestamp > sent, f"stale first frame: captured {sent - first.timestamp:.3f} s before the request"
        assert first.received_at - sent < 1.0
        reader = BackgroundReader(mjpeg_reader(stream), name=f"idle-{name}")
        opened = time.time()
        time.sleep(3.0)  # the measurement window: three times idle_after with a viewer
        status = cam(server, name)
        late = reader.count_between(opened + 2 * IDLE_AFTER, opened + 3.0)
        reader.stop(stream.close)
        reader.check()
    finally:
        stream.close()
    closed = time.time()
    assert status["idle"] is False, "the camera idled while a stream was open"
    assert late >= 0.5 * FPS * (3.0 - 2 * IDLE_AFTER), f"only {late} frames in the last second of a 3 s stream"
    wait_idle(server, name)
    idled = time.time()
    # idle_after counts from the viewer leaving, not from the stream's start 3 s earlier.
    assert idled - closed >= IDLE_AFTER - 0.1, f"idle {idled - closed:.2f} s after the stream closed"


@requires("ffmpeg")
def test_idle_after_0_never_idles(server: EdgeServer) -> None:
    counts = []
    for _ in range(7):  # 3 s without any viewer, looked at every 0.5 s
        status = cam(server, "awake")
        assert status["idle"] is False
        counts.append(status["frames_captured"])
        time.sleep(0.5)
    assert all(b > a for a, b in zip(counts, counts[1:], strict=False)), counts
    assert metric(server, "edge_camera_idle", "awake") == 0


def test_status_fps_is_not_overstated_at_start_up(start_server: StartServer) -> None:
    # The old formula ((n-1) / (last - first)) read 36-48 fps on a 30 fps camera in its first second.
    srv = start_server(cameras=[virtual_cam("cam0", 320, 240, 30)])
    readings = []
    with http_client(5) as client:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.5:
            readings.append(client.get(srv.url + "/api/status").json()["cameras"][0]["fps"])
    assert len(readings) >= 20, f"only {len(readings)} status polls in 1.5 s"
    assert max(readings) <= 31.5, f"fps readings in the first 1.5 s: max {max(readings)}; {readings}"
    assert readings[-1] >= 20, f"fps {readings[-1]} after 1.5 s of a 30 fps camera"
