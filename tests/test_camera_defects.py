"""What a camera serves, where it once went wrong (issue 14): rotation, waking from idle, status.

The camera is a snapshot URL served by the test itself (edge polls it at the camera's rate), so
the picture is known exactly and the test can change what the upstream answers at any moment:

* `rotate: 90` on a camera asked for 640x480 serves 480x640 frames holding the rotated picture,
  not the rotated picture squashed back into 640x480 (width/height are the size asked of the
  camera, before rotation, §8 of docs/interface.md);
* a camera whose source pauses while idle (a snapshot URL, a file) that stayed idle longer than
  its stall window drops and counts a broken first frame after waking, instead of taking it for
  a stalled source and restarting it (placeholder, reconnect);
* a snapshot of an idle camera that sends no new frame within 3 s is a 503 with a reason and
  Retry-After, not the frame from before the camera went idle;
* `processing` in /api/status names every reason for encoding (the virtual camera and its
  rotation alike), and /metrics describes edge_frames_captured truly and has no `_created` series.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import pytest

from tests.support.config import virtual_cam
from tests.support.http import fetch, http_server
from tests.support.process import EdgeServer, StartServer
from tests.support.status import camera_status, get_status, wait_camera_state, wait_status

FPS = 10.0
STALL_WINDOW = max(2.0, 3.0 / FPS)  # a source that delivers nothing valid this long is restarted
IDLE_AFTER = 1


def picture(width: int, height: int) -> np.ndarray:
    """An asymmetric picture (ramps and a white block in the top left corner): any rotation,
    flip or squash of it is far from the original."""
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([(xx * 255 // width), (yy * 255 // height), ((xx + yy) * 127 // (width + height))], axis=-1)
    image = image.astype(np.uint8)
    image[: height // 4, : width // 6] = 255
    return image


def jpeg_of(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return data.tobytes()


def decode(data: bytes | None) -> np.ndarray:
    assert data is not None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "the served frame does not decode"
    return image


def mad(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, f"served {a.shape[1]}x{a.shape[0]}, expected {b.shape[1]}x{b.shape[0]}"
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))


@dataclass
class Upstream:
    """A snapshot URL whose answers the test controls."""

    jpeg: bytes
    broken_next: int = 0  # answer this many truncated JPEGs first
    delay: float = 0.0  # seconds each answer is held back
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self) -> bytes:
        with self.lock:
            self.requests += 1
            if self.broken_next:
                self.broken_next -= 1
                return self.jpeg[: len(self.jpeg) // 2]  # cut in the scan: no end of image
            return self.jpeg


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, int]]:
    state = Upstream(jpeg_of(picture(640, 480)))

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if state.delay:
                time.sleep(state.delay)
            body = state.answer()
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    with http_server(Handler) as port:
        yield state, port


def snapshot_cam(port: int, **extra: Any) -> dict[str, Any]:
    cam: dict[str, Any] = {"name": "cam0", "source": f"http://127.0.0.1:{port}/snap.jpg", "fps": FPS}
    cam.update(extra)
    return cam


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        pytest.param({"width": 640, "height": 480}, (480, 640), id="asked-640x480"),
        pytest.param({}, (480, 640), id="source-size"),
        pytest.param({"width": 320, "height": 240}, (240, 320), id="resized-then-rotated"),
    ],
)
def test_rotate_90_turns_the_frame_and_never_squashes_it(
    start_server: StartServer, upstream: tuple[Upstream, int], size: dict[str, int], expected: tuple[int, int]
) -> None:
    state, port = upstream
    srv = start_server(cameras=[snapshot_cam(port, rotate=90, idle_after=0, **size)])
    wait_camera_state(srv, "cam0", "streaming", 15)
    served = decode(fetch(srv.url + "/snapshot").body)
    width, height = expected
    source = cv2.resize(picture(640, 480), (height, width), interpolation=cv2.INTER_AREA)
    assert mad(served, cv2.rotate(source, cv2.ROTATE_90_CLOCKWISE)) < 8, "the rotated picture is not what was served"
    cam = camera_status(get_status(srv), "cam0")
    assert (cam["width"], cam["height"]) == expected
    assert "rotate: 90" in cam["processing"], cam["processing"]


def test_a_broken_first_frame_after_a_long_idle_is_dropped_not_a_restart(
    start_server: StartServer, upstream: tuple[Upstream, int]
) -> None:
    state, port = upstream
    srv = start_server(cameras=[snapshot_cam(port, idle_after=IDLE_AFTER)])
    wait_status(srv, lambda st: camera_status(st, "cam0")["idle"], 15, "the camera idle")
    time.sleep(STALL_WINDOW + 1.0)  # the idle time itself is the condition under test: longer than the window
    before = camera_status(get_status(srv), "cam0")
    state.broken_next = 1
    snap = fetch(srv.url + "/snapshot", timeout=10)
    assert snap.status == 200 and snap.headers.get("x-placeholder") is None, (snap.status, snap.headers)
    assert mad(decode(snap.body), picture(640, 480)) < 8
    after = camera_status(get_status(srv), "cam0")
    assert after["state"] == "streaming", after
    assert after["frames_invalid"] == before["frames_invalid"] + 1, (before["frames_invalid"], after["frames_invalid"])
    assert "source down" not in srv.log_text(), "the broken frame restarted the source"


@pytest.mark.parametrize(
    ("delay", "placeholder"),
    [
        pytest.param(4.0, False, id="slow-to-wake"),  # the camera's next frame comes late: it is waited for
        pytest.param(30.0, True, id="hangs-on-waking"),  # the source stalls: the NO SIGNAL picture, fresh
    ],
)
def test_a_snapshot_of_an_idle_camera_is_a_frame_captured_after_the_request(
    start_server: StartServer, upstream: tuple[Upstream, int], delay: float, placeholder: bool
) -> None:
    """Never the frame from before the camera went idle (§8), even when waking takes longer
    than a few seconds."""
    state, port = upstream
    srv = start_server(cameras=[snapshot_cam(port, idle_after=IDLE_AFTER)])
    wait_status(srv, lambda st: camera_status(st, "cam0")["idle"], 15, "the camera idle")
    stale = fetch(srv.url + "/snapshot")  # wakes it: this one may be the old frame's successor...
    wait_status(srv, lambda st: camera_status(st, "cam0")["idle"], 15, "the camera idle again")
    state.delay = delay
    asked = time.time()
    snap = fetch(srv.url + "/snapshot", timeout=20)
    assert snap.status == 200, snap.status
    captured = float(snap.headers["x-timestamp"])
    assert captured >= asked, f"the frame was captured {asked - captured:.2f} s before the request"
    assert (snap.headers.get("x-placeholder") == "1") is placeholder, snap.headers
    assert stale.status == 200
    state.delay = 0.0


@pytest.fixture(scope="module")
def rotated_virtual(start_module_server: StartServer) -> EdgeServer:
    srv = start_module_server(cameras=[virtual_cam("cam0", 320, 240, 10) | {"rotate": 90, "flip": "vertical"}])
    wait_camera_state(srv, "cam0", "streaming", 15)
    return srv


def test_processing_names_every_reason_for_encoding(rotated_virtual: EdgeServer) -> None:
    cam = camera_status(get_status(rotated_virtual), "cam0")
    for reason in ("the virtual camera draws its frames", "rotate: 90", "flip: vertical"):
        assert reason in cam["processing"], cam["processing"]
    assert (cam["width"], cam["height"]) == (240, 320)


def metrics_text(srv: EdgeServer) -> str:
    body = fetch(srv.url + "/metrics").body
    assert body is not None
    return body.decode()


def test_the_captured_frames_metric_says_what_it_counts(rotated_virtual: EdgeServer) -> None:
    lines = metrics_text(rotated_virtual).splitlines()
    help_line = next(line for line in lines if line.startswith("# HELP edge_frames_captured"))
    assert "passed through or encoded" in help_line, help_line


def test_metrics_have_no_created_series(rotated_virtual: EdgeServer) -> None:
    lines = metrics_text(rotated_virtual).splitlines()
    assert any(line.startswith("edge_encode_seconds_count") for line in lines)  # histograms are there
    assert not [line for line in lines if "_created" in line], [line for line in lines if "_created" in line][:3]


def test_info_lines_are_not_under_uvicorn_error(start_server: StartServer) -> None:
    srv: EdgeServer = start_server(cameras=[virtual_cam("cam0", 160, 120, 10)])
    fetch(srv.url + "/healthz")
    lines = srv.log_text().splitlines()
    assert not [line for line in lines if " INFO uvicorn.error " in line], "\n".join(lines[:10])
    assert any(" INFO edge.server " in line and "Started server process" in line for line in lines), lines[:10]
