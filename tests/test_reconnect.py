"""Source failures (§3 and §6 of docs/interface.md): a missing or failing source degrades to a placeholder
frame and `reconnecting`, recovers by itself, and never ends the clients' streams.

The failing-and-recovering source is a second `edge` server used as an OpenCV URL source, so
the outage is real (its process is stopped and restarted on the same port).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import cv2
import numpy as np

from tests.support.config import virtual_cam
from tests.support.frames import BackgroundReader, mjpeg_reader
from tests.support.http import fetch
from tests.support.jpeg import decode_jpeg
from tests.support.mjpeg import TIMESTAMP_RE, MjpegStream
from tests.support.process import StartServer
from tests.support.status import camera_status, get_status, wait_camera_state, wait_status
from tests.support.waiting import wait_for

# A device path no machine has (a by-id link is named after the camera's USB identity).
MISSING_DEVICE = "/dev/v4l/by-id/usb-edge-tests-no-such-camera-video-index0"


def test_missing_device_serves_placeholder(start_server: StartServer) -> None:
    """A device that does not exist: placeholder snapshots and frames, reconnecting, not ready."""
    srv = start_server(cameras=[virtual_cam("cam0", 320, 240, 10, source=MISSING_DEVICE)])
    wait_camera_state(srv, "cam0", "reconnecting", 10)

    snap = wait_for(
        lambda: (r := fetch(srv.url + "/snapshot")).status == 200 and r,
        5,
        message="placeholder snapshot (200)",
    )
    assert snap.headers.get("content-type", "").startswith("image/jpeg")
    assert TIMESTAMP_RE.fullmatch(snap.headers.get("x-timestamp", "")), snap.headers
    assert snap.body is not None
    decode_jpeg(snap.body)

    # `fps` is measured: a camera that delivers no real frames does not report its configured rate
    fps = camera_status(get_status(srv), "cam0")["fps"]
    assert fps < 0.5 * 10, f"status fps {fps} for a camera that captures nothing (configured 10)"

    ready = fetch(srv.url + "/readyz")
    assert ready.status == 503, ready.status
    assert isinstance(ready.json(), dict), ready.body
    assert fetch(srv.url + "/healthz").status == 200, "capture thread must stay alive while reconnecting"

    with MjpegStream(srv.host, srv.port, "/stream", timeout=10) as s:
        assert s.head is not None and s.head.status == 200
        parts = s.read_parts(3)  # placeholder frames keep the stream alive (about 1/s)
        for p in parts:
            decode_jpeg(p.jpeg)
        assert parts[-1].timestamp > parts[0].timestamp


def test_url_source_fails_and_recovers(start_server: StartServer) -> None:
    """Stop the upstream server: B goes reconnecting and keeps its client fed; restart: recovers."""
    a = start_server(cameras=[virtual_cam("cam0", 320, 240, 15)])
    port_a = a.port
    b = start_server(cameras=[virtual_cam("relay", 480, 360, 15, source=f"http://127.0.0.1:{port_a}/stream.mjpg")])
    wait_camera_state(b, "relay", "streaming", 25)

    client = MjpegStream(b.host, b.port, "/stream", timeout=15)
    reader = BackgroundReader(mjpeg_reader(client, decode=True), "b-client")
    try:
        reader.wait_frames(5, 10, "client frames from B")
        real_size = (reader.snapshot()[-1].width, reader.snapshot()[-1].height)

        # outage
        rc = a.stop(signal.SIGTERM, timeout=10)
        assert rc == 0, f"upstream exited {rc} on SIGTERM"
        wait_camera_state(b, "relay", "reconnecting", 15)
        t_down = time.time()
        reader.wait_frames(2, 10, "placeholder frames during the outage", since=t_down)
        wait_status(b, lambda st: camera_status(st, "relay")["fps"] < 0.5 * 15, 5, "measured fps falls in the outage")
        during = [f for f in reader.snapshot() if f.received_at >= t_down]
        placeholder_size = (during[-1].width, during[-1].height)

        # recovery on the same port
        a2 = start_server(cameras=[virtual_cam("cam0", 320, 240, 15)], port=port_a)
        assert a2.port == port_a
        st = wait_camera_state(b, "relay", "streaming", 30)
        assert camera_status(st, "relay")["state"] == "streaming"
        t_up = time.time()
        reader.wait_frames(5, 10, "frames after recovery on the same connection", since=t_up)
        after = [f for f in reader.snapshot() if f.received_at >= t_up]
        if real_size != placeholder_size:
            # real and placeholder frames are distinguishable by size: the last ones must be real
            assert (after[-1].width, after[-1].height) == real_size, (after[-1], real_size, placeholder_size)
        ready = wait_for(lambda: fetch(b.url + "/readyz").status == 200, 5, message="B ready again")
        assert ready
    finally:
        reader.stop(client.close)


def write_mjpg_avi(path: Path, frames: int = 20, size: tuple[int, int] = (320, 240)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, size)
    assert writer.isOpened(), "OpenCV cannot write MJPG AVI here"
    for i in range(frames):
        img = np.full((size[1], size[0], 3), (i * 12) % 256, np.uint8)
        cv2.putText(img, str(i), (20, size[1] // 2), cv2.FONT_HERSHEY_SIMPLEX, 2, (0, 0, 255), 3)
        writer.write(img)
    writer.release()
    assert path.stat().st_size > 0
    return path


def test_file_source_streams_and_loops(start_server: StartServer, tmp_path: Path) -> None:
    """A 20-frame video file plays and loops (frames_captured goes past 20)."""
    video = write_mjpg_avi(tmp_path / "clip.avi")
    srv = start_server(cameras=[virtual_cam("file", 320, 240, 20, source=str(video))])
    st = wait_status(
        srv,
        lambda s: camera_status(s, "file")["frames_captured"] > 30,
        15,
        "frames_captured beyond the file's 20 frames",
    )
    assert camera_status(st, "file")["state"] == "streaming"
    with MjpegStream(srv.host, srv.port, "/stream") as s:
        for p in s.read_parts(3):
            img = decode_jpeg(p.jpeg)
            assert (img.shape[1], img.shape[0]) == (320, 240)
