"""MJPEG stream (§3 and §4 of docs/interface.md): exact framing, URL forms, per-client fps cap, errors.

The framing is checked byte for byte on a raw socket because existing front-ends and
mjpg-streamer clients parse it with fragile hand-written code; a stray header, a quoted
boundary or a missing CRLF breaks them even though browsers cope.
"""

from __future__ import annotations

import time

import pytest

from tests.support.config import virtual_cam
from tests.support.http import fetch
from tests.support.jpeg import decode_jpeg, jpeg_size
from tests.support.mjpeg import CONTENT_TYPE_RE, MjpegStream
from tests.support.process import EdgeServer, StartServer

CAM0 = (640, 480)
CAM1 = (320, 240)


@pytest.fixture(scope="module")
def two_cams(start_module_server: StartServer) -> EdgeServer:
    """cam0 640x480@30 (default camera) and cam1 320x240@30."""
    return start_module_server(
        cameras=[virtual_cam("cam0", *CAM0, fps=30), virtual_cam("cam1", *CAM1, fps=30)],
        server={"max_clients": 64},
    )


def open_stream(srv: EdgeServer, path: str, **kw: object) -> MjpegStream:
    return MjpegStream(srv.host, srv.port, path, **kw)  # type: ignore[arg-type]


def test_head_and_framing_byte_for_byte_http11(two_cams: EdgeServer) -> None:
    """Status, headers exactly per §4; each part exactly three headers, JPEG, CRLF, boundary."""
    with open_stream(two_cams, "/stream") as s:
        head = s.head
        assert head is not None
        assert head.status == 200, head.raw
        ctypes = head.get_all("Content-Type")
        assert len(ctypes) == 1, ctypes
        m = CONTENT_TYPE_RE.fullmatch(ctypes[0])
        assert m, f"Content-Type {ctypes[0]!r} is not 'multipart/x-mixed-replace; boundary=<token>'"
        token = m.group("b")
        assert not token.startswith("--") and '"' not in token, token
        assert head.get_all("Cache-Control") == ["no-store, no-cache, must-revalidate, max-age=0"]
        assert head.get_all("Pragma") == ["no-cache"]
        assert head.get_all("X-Accel-Buffering") == ["no"]

        parts = s.read_parts(12)  # read_part verifies the exact part layout
        previous = 0.0
        for part in parts:
            img = decode_jpeg(part.jpeg)
            assert (img.shape[1], img.shape[0]) == CAM0
            assert part.timestamp > previous, "X-Timestamp must strictly rise"
            previous = part.timestamp
            assert part.received_at - 3.0 < part.timestamp <= part.received_at + 0.05, (
                f"X-Timestamp {part.timestamp_text} not close to wall clock {part.received_at:.6f}"
            )


def test_http10_gets_raw_close_delimited_multipart(two_cams: EdgeServer) -> None:
    """HTTP/1.0 clients cannot de-chunk: the body must be the raw multipart bytes."""
    with open_stream(two_cams, "/stream", http10=True) as s:
        assert s.head is not None and s.head.status == 200
        assert s.head.get("Transfer-Encoding") is None, s.head.raw
        assert not s.chunked
        for part in s.read_parts(3):  # the very first body bytes must be `--<token>\r\n`, then parts
            decode_jpeg(part.jpeg)


URL_FORMS = [  # (path, the camera's size, parts to read)
    *((path, CAM0, 2) for path in ("/stream", "/stream.mjpg", "/cameras/cam0/stream", "/?action=stream")),
    ("/cameras/cam1/stream", CAM1, 3),
]


@pytest.mark.parametrize(("path", "size", "parts"), [pytest.param(*form, id=form[0]) for form in URL_FORMS])
def test_url_forms_serve_their_camera(two_cams: EdgeServer, path: str, size: tuple[int, int], parts: int) -> None:
    """All documented MJPEG URLs (incl. mjpg-streamer's `/?action=stream`) serve cam0, the default
    camera; `/cameras/cam1/stream` serves cam1 at its own size."""
    with open_stream(two_cams, path) as s:
        assert s.head is not None and s.head.status == 200, s.head.raw if s.head else None
        for part in s.read_parts(parts):
            assert jpeg_size(part.jpeg) == size


def test_fps_query_caps_the_client_rate(two_cams: EdgeServer) -> None:
    """`?fps=5` on a 30 fps camera: about 5 frames/s measured over 2.5 s."""
    with open_stream(two_cams, "/stream?fps=5") as s:
        assert s.head is not None and s.head.status == 200
        s.read_parts(2)  # settle: the first frame may come immediately
        t0 = time.monotonic()
        count = 0
        while time.monotonic() - t0 < 2.5:
            s.read_part()
            count += 1
        rate = count / (time.monotonic() - t0)
        assert 3.5 <= rate <= 6.5, f"measured {rate:.2f} fps with fps=5 (camera 30)"


def test_fractional_fps_query_is_accepted(two_cams: EdgeServer) -> None:
    """`fps` may be fractional (0 < N <= camera fps)."""
    with open_stream(two_cams, "/stream?fps=2.5") as s:
        assert s.head is not None and s.head.status == 200, s.head.raw if s.head else None
        decode_jpeg(s.read_part().jpeg)


@pytest.mark.parametrize("value", ["abc", "0", "-1", "1000", "30.5", "nan", "inf"])
def test_bad_fps_query_is_400_json(two_cams: EdgeServer, value: str) -> None:
    """Out-of-range or non-numeric fps (incl. above the camera's 30 fps) is a 400 with JSON."""
    r = fetch(f"{two_cams.url}/stream?fps={value}")
    assert r.status == 400, f"fps={value!r} answered {r.status}"
    assert r.headers.get("content-type", "").startswith("application/json")
    body = r.json()
    assert isinstance(body, dict) and "error" in body, body


@pytest.mark.parametrize("path", ["/cameras/nope/stream", "/cameras/nope/stream?fps=5"])
def test_unknown_camera_is_404_json(two_cams: EdgeServer, path: str) -> None:
    r = fetch(two_cams.url + path)
    assert r.status == 404, r.status
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str), body
