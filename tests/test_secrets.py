"""Camera credentials never leave the server (CONTRACT §7): a source's URL user info and secret
query parameters are `***` in /api/status, /metrics, every log line (start-up line included), the
page's data and the NO SIGNAL placeholder picture.

The cameras point at 127.0.0.1:9, where nothing listens: they go to `reconnecting` at once and
serve the placeholder, whose picture carries the reason text.  OCR is not available, so the
picture is checked by rendering: the served placeholder is compared, on the pixels where the
candidates differ, with `make_placeholder` drawn in-process with the redacted reason and with
reasons that carry the secrets.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import cv2
import numpy as np
import pytest

from edge import capture as capture_module
from edge.capture import Capture
from edge.config import CameraConfig
from edge.sources import make_placeholder
from tests.support.http import fetch
from tests.support.jpeg import decode_jpeg
from tests.support.process import EdgeServer, StartServer
from tests.support.status import camera_status, wait_all_cameras
from tests.support.waiting import wait_for
from tests.support.websocket import RawWebSocket

SOURCE = "rtsp://admin:hunter2@127.0.0.1:9/live?token=SECRET1234&pwd=abcd1234"
SHOWN = "rtsp://***@127.0.0.1:9/live?token=***&pwd=***"
# What a redaction of the user info alone (the code before this work) shows.
USERINFO_ONLY = "rtsp://***@127.0.0.1:9/live?token=SECRET1234&pwd=abcd1234"
SOURCE2 = "http://viewer:Pa%40ss%3Aw0rd@127.0.0.1:9/mjpg?api_key=K3Y12345abc&X-Amz-Signature=deadbeefcafe&res=hd"
SHOWN2 = "http://***@127.0.0.1:9/mjpg?api_key=***&X-Amz-Signature=***&res=hd"
SECRETS = (
    "hunter2",
    "SECRET1234",
    "abcd1234",
    "admin:hunter2",
    "Pa%40ss%3Aw0rd",
    "Pa@ss:w0rd",
    "K3Y12345abc",
    "deadbeefcafe",
)
WIDTH, HEIGHT = 640, 480


def leaked(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


@pytest.fixture(scope="module")
def srv(start_module_server: StartServer) -> EdgeServer:
    cameras = [
        {"name": "cam0", "source": SOURCE, "width": WIDTH, "height": HEIGHT, "fps": 10, "quality": 80},
        {"name": "cam1", "source": SOURCE2, "width": 320, "height": 240, "fps": 10, "quality": 80},
    ]
    server = start_module_server(cameras=cameras, server={"max_clients": 8})
    wait_all_cameras(server, "reconnecting", 20)
    return server


def test_status_shows_sources_masked(srv: EdgeServer) -> None:
    res = fetch(srv.url + "/api/status")
    assert res.status == 200 and res.body is not None
    text = res.body.decode()
    assert not leaked(text), f"/api/status shows {leaked(text)}: {text}"
    status = json.loads(text)
    for name, shown in (("cam0", SHOWN), ("cam1", SHOWN2)):
        cam = camera_status(status, name)
        assert cam["state"] == "reconnecting"
        assert cam["source"] == shown
        assert cam["configured_source"] == shown


def test_metrics_show_no_secret(srv: EdgeServer) -> None:
    res = fetch(srv.url + "/metrics")
    assert res.status == 200 and res.body is not None
    text = res.body.decode()
    assert "edge_frames_captured" in text
    assert not leaked(text), f"/metrics shows {leaked(text)}"


def test_page_and_its_data_show_no_secret(srv: EdgeServer) -> None:
    """The viewer page is static and shows the sources it reads from /api/status."""
    page = fetch(srv.url + "/")
    assert page.status == 200 and page.body is not None
    assert not leaked(page.body.decode())
    data = fetch(srv.url + "/api/status")
    assert data.body is not None and not leaked(data.body.decode())


def test_log_shows_no_secret(srv: EdgeServer) -> None:
    wait_for(lambda: "cam1: source down" in srv.log_text(), 10, 0.05, "cam1's source-down line")
    log = srv.log_text()
    assert not leaked(log), f"the server log shows {leaked(log)}:\n{log}"
    startup = next(line for line in log.splitlines() if "listening on" in line)
    assert f"cam0 ({SHOWN})" in startup and f"cam1 ({SHOWN2})" in startup, startup
    down = [line for line in log.splitlines() if "cam0: source down (" in line]
    assert down and SHOWN in down[0], f"the source-down line should name the source as {SHOWN}: {down}"


def test_log_masks_secret_values_quoted_from_anywhere(srv: EdgeServer) -> None:
    """A secret that reaches a log line by another road (here: a WebSocket client sending it as a
    message type, which the server quotes when it rejects the message) is masked too."""
    ws = RawWebSocket(srv.host, srv.port, "/cameras/cam1/ws")
    try:
        assert ws.recv_json()["type"] == "hello"
        for secret in ("SECRET1234", "K3Y12345abc"):
            ws.send_text(json.dumps({"type": secret}))
            assert ws.recv_text()["type"] == "error"
    finally:
        ws.close()
    wait_for(
        lambda: srv.log_text().count("client message rejected: unknown message type") >= 2,
        5,
        0.05,
        "the two rejections logged",
    )
    log = srv.log_text()
    assert "client message rejected: unknown message type '***'" in log
    assert not leaked(log), f"the server log shows {leaked(log)}"


def _reason_from_log(log: str) -> str:
    m = re.search(r"cam0: source down \((.+?)\); showing placeholder", log)
    assert m, f"no source-down line for cam0 in the log:\n{log}"
    return m.group(1)


def _renders(reasons: dict[str, str]) -> dict[str, np.ndarray]:
    """Placeholders drawn in-process, all within one clock second (the picture shows the time)."""
    for _ in range(5):
        before = time.strftime("%S")
        out = {k: make_placeholder(WIDTH, HEIGHT, "cam0", r).astype(np.int16) for k, r in reasons.items()}
        if time.strftime("%S") == before:
            return out
    raise AssertionError("could not render the placeholders within one second")


def test_placeholder_picture_draws_the_redacted_reason(srv: EdgeServer) -> None:
    res = fetch(srv.url + "/cameras/cam0/snapshot")
    assert res.status == 200 and res.body is not None
    assert res.headers.get("x-placeholder") == "1", "cam0 should be serving its placeholder"
    served = decode_jpeg(res.body).astype(np.int16)
    assert served.shape == (HEIGHT, WIDTH, 3)

    # The reason as logged (the log is masked, so it shows the source in one of these forms
    # whatever is drawn), with the source swapped for each candidate.
    logged = _reason_from_log(srv.log_text())
    quoted = next((form for form in (SOURCE, USERINFO_ONLY, SHOWN) if form in logged), None)
    assert quoted, f"the logged reason {logged!r} does not quote the source"
    reasons = {
        "redacted": logged.replace(quoted, SHOWN),
        "raw": logged.replace(quoted, SOURCE),
        "userinfo-only": logged.replace(quoted, USERINFO_ONLY),
    }
    renders = _renders(reasons)
    # Where the candidates differ: the reason line only (the time line is the same in all).
    differ = np.zeros((HEIGHT, WIDTH), dtype=bool)
    keys = list(renders)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            differ |= np.abs(renders[a] - renders[b]).max(axis=2) > 0
    assert differ.sum() > 200, "the candidate reasons render identically; nothing to compare"
    region = cv2.dilate(differ.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    rows = np.flatnonzero(region.any(axis=1))
    assert rows.max() - rows.min() < HEIGHT // 5, "the compared region should be one text line"

    errors = {k: float(np.abs(served - r)[region].mean()) for k, r in renders.items()}
    best = min(errors, key=lambda k: errors[k])
    assert best == "redacted", f"the served placeholder matches the {best!r} reason best: {errors}"
    others = min(v for k, v in errors.items() if k != "redacted")
    assert errors["redacted"] < 0.5 * others, f"no clear match: {errors}"
    assert errors["redacted"] < 12, f"the served reason line does not match the redacted one: {errors}"


def test_capture_draws_the_placeholder_from_the_redacted_source(monkeypatch: pytest.MonkeyPatch) -> None:
    """In process: the reason text handed to the drawing function holds no secret."""
    drawn: list[str] = []
    got = threading.Event()
    real = capture_module.make_placeholder

    def spy(width: int, height: int, name: str, reason: str) -> Any:
        drawn.append(reason)
        got.set()
        return real(width, height, name, reason)

    monkeypatch.setattr(capture_module, "make_placeholder", spy)
    cap = Capture(CameraConfig(name="cam0", source=SOURCE, width=160, height=120, fps=10, quality=80))
    cap.start()
    try:
        assert got.wait(15), "the capture thread drew no placeholder"
        assert cap.source_description == SHOWN
    finally:
        cap.request_stop()
        cap.join(5)
    assert drawn and all(not leaked(r) for r in drawn), f"placeholder reasons: {drawn}"
    assert any(SHOWN in r for r in drawn), f"placeholder reasons: {drawn}"
