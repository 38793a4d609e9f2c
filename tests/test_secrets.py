"""Camera credentials never leave the server (§7 of docs/interface.md): a source's URL user info and secret
query parameters are `***` in /api/status, /metrics, every log line (start-up line included), the
page's data and the NO SIGNAL placeholder picture; so are credential options of a `pipe:`
command (`-u USER:PASSWORD`, `--password`), and a secret can stay out of the config altogether
as a `${NAME}` or `${file:PATH}` reference, filled in when the source opens and shown as written.

The cameras point at 127.0.0.1:9, where nothing listens: they go to `reconnecting` at once and
serve the placeholder, whose picture carries the reason text.  OCR is not available, so the
picture is checked by rendering: the served placeholder is compared, on the pixels where the
candidates differ, with `make_placeholder` drawn in-process with the redacted reason and with
reasons that carry the secrets.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.capture import Capture
from edge.capture import capture as capture_module
from edge.config import CameraConfig, ConfigError, parse_config
from edge.sources import SourceError, make_placeholder
from tests.support.config import write_config
from tests.support.http import fetch
from tests.support.jpeg import decode_jpeg
from tests.support.process import EdgeServer, StartServer, run_until_exit
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


# --------------------------------------------------------------------------------------------
# Secrets in pipe: commands, and kept out of the config with ${NAME} and ${file:PATH}
# --------------------------------------------------------------------------------------------

PRODUCER = Path(__file__).resolve().parent / "producers" / "mjpeg_producer.py"
CURL_PASSWORD = "hunter2pass"
ENV_NAME, ENV_SECRET = "EDGE_TEST_CAMERA_PASSWORD", "env-secret-value-42"
FILE_SECRET = "file-secret-value-43"
PIPE_SECRETS = (CURL_PASSWORD, ENV_SECRET, FILE_SECRET)


def producer(events: Path, *credentials: str) -> str:
    """A pipe: source running the test producer with curl-like credential options; it writes
    what it received to `events` and, like a chatty program, quotes it on stderr too."""
    base = [sys.executable, str(PRODUCER), str(events), "good", "--fps", "10", "--echo-credentials"]
    return "pipe:" + shlex.join([*base, *credentials])


def received_credentials(events: Path) -> str:
    def line() -> str | None:
        text = events.read_text() if events.exists() else ""
        return next((ln.split(" ", 3)[3] for ln in text.splitlines() if ln.startswith("credentials ")), None)

    return wait_for(line, 10, 0.05, f"the producer's credentials event in {events}")


@pytest.fixture(scope="module")
def pipe_srv(start_module_server: StartServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[EdgeServer, Path]:
    d = tmp_path_factory.mktemp("pipe-secrets")
    (d / "camera_password").write_text(FILE_SECRET + "\n")
    cameras = [
        {"name": "curl", "source": producer(d / "curl.events", "-u", f"admin:{CURL_PASSWORD}")},
        {"name": "env", "source": producer(d / "env.events", "--password", "${" + ENV_NAME + "}")},
        {"name": "file", "source": producer(d / "file.events", "-u", f"admin:${{file:{d / 'camera_password'}}}")},
        {"name": "literal", "source": producer(d / "literal.events", "-u", "lit:$${NOT_A_REFERENCE}")},
    ]
    for cam in cameras:
        cam.update(width=320, height=240, fps=10, idle_after=0)
    # At debug level: the producer's stderr (which quotes the credentials) is logged line by line.
    srv = start_module_server(cameras=cameras, log_level="debug", env_extra={ENV_NAME: ENV_SECRET})
    wait_all_cameras(srv, "streaming", 20)
    return srv, d


def test_pipe_credentials_are_masked_in_status_and_log(pipe_srv: tuple[EdgeServer, Path]) -> None:
    srv, d = pipe_srv
    assert received_credentials(d / "curl.events") == f"user=admin:{CURL_PASSWORD} password=None"
    cam = camera_status(fetch(srv.url + "/api/status").json(), "curl")
    assert cam["configured_source"].endswith("--echo-credentials -u admin:***"), cam["configured_source"]
    assert CURL_PASSWORD not in cam["source"]  # shortened for display, masked all the same
    wait_for(lambda: "logging in as admin" in srv.log_text(), 10, 0.05, "the producer's stderr line")
    log = srv.log_text()
    assert CURL_PASSWORD not in log, [ln for ln in log.splitlines() if CURL_PASSWORD in ln]


def test_secret_references_are_filled_in_and_shown_as_written(pipe_srv: tuple[EdgeServer, Path]) -> None:
    """${NAME} and ${file:PATH} reach the producer as their values; status and log show the
    reference (never the value); $${ is a literal ${."""
    srv, d = pipe_srv
    assert received_credentials(d / "env.events") == f"user=None password={ENV_SECRET}"
    assert received_credentials(d / "file.events") == f"user=admin:{FILE_SECRET} password=None"
    assert received_credentials(d / "literal.events") == "user=lit:${NOT_A_REFERENCE} password=None"
    status_text = fetch(srv.url + "/api/status").body.decode()  # type: ignore[union-attr]
    status = json.loads(status_text)
    assert "${" + ENV_NAME + "}" in camera_status(status, "env")["configured_source"]
    assert "${file:" in camera_status(status, "file")["configured_source"]
    metrics = fetch(srv.url + "/metrics").body.decode()  # type: ignore[union-attr]
    wait_for(lambda: srv.log_text().count("logging in as") >= 4, 10, 0.05, "every producer's stderr line")
    for where, text in (("status", status_text), ("metrics", metrics), ("log", srv.log_text())):
        for secret in PIPE_SECRETS:
            assert secret not in text, f"{secret} appears in the {where}"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("pipe:curl -u admin:${EDGE_TEST_SURELY_UNSET_VAR} http://cam/", "EDGE_TEST_SURELY_UNSET_VAR is not set"),
        ("rtsp://admin:${file:/nonexistent/secret}@cam/live", "cannot read the secret file /nonexistent/secret"),
        ("pipe:curl -u admin:${CAM http://cam/", "without its closing }"),
        ("pipe:curl -u admin:${1abc} http://cam/", "neither an environment variable name nor file:PATH"),
        ("pipe:curl -u admin:${file:} http://cam/", "needs a path"),
    ],
)
def test_bad_secret_references_are_config_errors(source: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"cameras": [{"name": "cam0", "source": source}]}, "edge.yaml")
    assert info.value.key == "cameras[0].source"
    assert message in info.value.message, info.value.message


def test_an_unset_reference_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = write_config(tmp_path / "edge.yaml", [{"name": "cam0", "source": "pipe:curl -u a:${EDGE_NOPE_42} x"}])
    rc, log = run_until_exit(config)
    assert rc == 2, log
    assert "cameras[0].source" in log and "EDGE_NOPE_42 is not set" in log, log
    assert "Traceback" not in log


def test_a_secret_file_is_read_again_when_the_source_reopens(tmp_path: Path) -> None:
    """Docker and systemd rotate secrets by replacing the file: the next open uses the new value."""
    secret = tmp_path / "pw"
    secret.write_text("first-value-1234")
    cam = CameraConfig(name="cam0", source=f"pipe:true --password ${{file:{secret}}}")
    from edge.sources.pipe import PipeSource

    source = PipeSource(cam, threading.Event(), cam.spec)
    assert source.expand(f"${{file:{secret}}}") == "first-value-1234"
    secret.write_text("second-value-5678\n")
    assert source.expand(f"${{file:{secret}}}") == "second-value-5678"
    assert source.secrets == {"first-value-1234", "second-value-5678"}
    secret.unlink()
    with pytest.raises(SourceError, match="cannot read the secret file"):
        source.expand(f"${{file:{secret}}}")
