"""`http://` sources (edge/sources/http.py): an MJPEG stream from another server is
passed through byte for byte, with credentials from the URL that are shown nowhere; a wrong
password, an upstream outage and a restart are handled; odd multipart framing (LF line ends, no
Content-Length, chunked transfer encoding) is understood; a snapshot URL is polled; anything
else goes to FFmpeg.

The upstreams are real: a second `edge` server, a small asyncio multipart server, and
`http.server` serving a video file.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import http.server
import socket
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.support.config import virtual_cam
from tests.support.http import fetch, http_server
from tests.support.jpeg import decode_jpeg, sha
from tests.support.mjpeg import MjpegStream
from tests.support.process import EdgeServer, StartServer, free_port
from tests.support.programs import requires
from tests.support.sockets import StreamEnded
from tests.support.sources import mjpeg_clip
from tests.support.status import camera_status, get_status, wait_camera_state, wait_status
from tests.support.tls import make_cert
from tests.support.waiting import wait_for

FPS = 15


def http_cam(name: str, url: str, fps: float = FPS, **extra: Any) -> dict[str, Any]:
    cam = virtual_cam(name, 320, 240, fps, source=url)
    cam["idle_after"] = 0
    cam.update(extra)
    return cam


def cam_of(srv: EdgeServer, name: str = "b") -> dict[str, Any]:
    return camera_status(get_status(srv), name)


def streaming_passthrough(srv: EdgeServer, name: str = "b", timeout: float = 15) -> dict[str, Any]:
    st = wait_status(
        srv,
        lambda s: camera_status(s, name)["state"] == "streaming" and camera_status(s, name)["fps"] > 1,
        timeout,
        f"{name} streaming",
    )
    cam = camera_status(st, name)
    assert cam["passthrough"] is True, cam
    assert cam["source_kind"] == "http", cam
    return cam


class FrameCollector:
    """Reads a server's MJPEG stream in a thread and remembers the hash of every frame."""

    def __init__(self, srv: EdgeServer, path: str = "/stream") -> None:
        self.stream = MjpegStream(srv.host, srv.port, path, timeout=10)
        self.hashes: set[str] = set()
        self.count = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(StreamEnded, OSError, AssertionError):
            while True:
                part = self.stream.read_part()
                with self._lock:
                    self.hashes.add(sha(part.jpeg))
                    self.count += 1

    def seen(self, digest: str) -> bool:
        with self._lock:
            return digest in self.hashes

    def close(self) -> None:
        self.stream.close()
        self._thread.join(5)


def assert_served_by(collector: FrameCollector, jpeg: bytes, what: str) -> None:
    """``jpeg`` is, byte for byte, a frame the upstream served (it may reach our collector a
    moment after the relay, hence the short wait)."""
    digest = sha(jpeg)
    wait_for(lambda: collector.seen(digest), 3, message=f"{what} to be a frame the upstream served")


# --------------------------------------------------------------------------------------------
# from another edge
# --------------------------------------------------------------------------------------------


def test_relay_of_another_edge_is_byte_identical(start_server: StartServer) -> None:
    """B reads A's /stream: passthrough, A's size, and B's snapshot and stream parts are frames
    A served, byte for byte."""
    a = start_server(cameras=[virtual_cam("a", 320, 240, FPS)])
    collector = FrameCollector(a)
    try:
        b = start_server(cameras=[http_cam("b", f"http://127.0.0.1:{a.port}/stream")])
        cam = streaming_passthrough(b)
        assert (cam["width"], cam["height"]) == (320, 240), cam
        wait_status(b, lambda s: 12 <= camera_status(s, "b")["fps"] <= 18, 5, "B relaying at A's 15 fps")

        snap = fetch(b.url + "/snapshot")
        assert snap.status == 200 and snap.body is not None
        assert snap.headers.get("x-placeholder") is None
        assert_served_by(collector, snap.body, "B's snapshot")
        with MjpegStream(b.host, b.port, "/stream", timeout=10) as s:
            parts = s.read_parts(15)
        for i, part in enumerate(parts):
            assert_served_by(collector, part.jpeg, f"B's stream part {i}")
        assert len({sha(p.jpeg) for p in parts}) >= 10, "B repeats frames instead of relaying A's"
    finally:
        collector.close()


def test_credentials_in_the_url_are_used_and_never_shown(start_server: StartServer, tmp_path: Path) -> None:
    """A behind Basic auth: B with the right password in its URL streams (passthrough), and the
    password appears nowhere in B's log, /api/status or /metrics; C with a wrong one is
    reconnecting with a problem that says 401."""
    password = "Sup3r-secret-relay-pw"
    wrong = "Wrong-password-1234"
    (tmp_path / "pw").write_text(password + "\n")
    a = start_server(
        cameras=[virtual_cam("a", 320, 240, FPS)],
        server={"auth": {"username": "admin", "password_file": str(tmp_path / "pw")}},
    )
    b = start_server(cameras=[http_cam("b", f"http://admin:{password}@127.0.0.1:{a.port}/stream")])
    c = start_server(cameras=[http_cam("c", f"http://admin:{wrong}@127.0.0.1:{a.port}/stream")])

    streaming_passthrough(b)
    snap = fetch(b.url + "/snapshot")
    assert snap.status == 200 and snap.body is not None and snap.headers.get("x-placeholder") is None
    decode_jpeg(snap.body)

    st = wait_camera_state(c, "c", "reconnecting", 10)
    problem = camera_status(st, "c")["problem"] or ""
    assert "401" in problem, problem
    assert "password" in problem, f"the problem should say what to check: {problem}"

    for srv, secret in ((b, password), (c, wrong)):
        basic = base64.b64encode(f"admin:{secret}".encode()).decode()
        status = fetch(srv.url + "/api/status").body or b""
        metrics = fetch(srv.url + "/metrics").body or b""
        for where, text in (("log", srv.log_text()), ("/api/status", status.decode()), ("/metrics", metrics.decode())):
            assert secret not in text, f"the password appears in {where}"
            assert basic not in text, f"the Basic credentials appear in {where}"
        assert "***@127.0.0.1" in status.decode(), "the source should be shown with its user info masked"


def test_upstream_outage_and_restart(start_server: StartServer) -> None:
    """A stops: B goes reconnecting and serves placeholders on the open stream and as snapshots;
    A comes back on the same port: B streams A's frames again, on the same connection."""
    port = free_port()
    a = start_server(cameras=[virtual_cam("a", 320, 240, FPS)], port=port)
    b = start_server(cameras=[http_cam("b", f"http://127.0.0.1:{port}/stream")])
    streaming_passthrough(b)

    with MjpegStream(b.host, b.port, "/stream", timeout=10) as viewer:
        viewer.read_parts(3)
        assert a.stop() == 0
        t_down = time.monotonic()
        wait_camera_state(b, "b", "reconnecting", 5)
        took = time.monotonic() - t_down
        assert took < 3.5, f"B noticed the outage after {took:.1f} s"
        snap = fetch(b.url + "/snapshot")
        assert snap.status == 200 and snap.headers.get("x-placeholder") == "1", snap.headers
        assert snap.body is not None
        decode_jpeg(snap.body)
        # The open stream goes on with placeholders (about one a second).
        for part in viewer.read_parts(2):
            decode_jpeg(part.jpeg)

        a2 = start_server(cameras=[virtual_cam("a", 320, 240, FPS)], port=port)
        collector = FrameCollector(a2)
        try:
            streaming_passthrough(b, timeout=20)
            # The viewer's connection carries real frames again: A's, byte for byte.
            deadline = time.monotonic() + 10
            while True:
                part = viewer.read_part()
                if collector.seen(sha(part.jpeg)):
                    break
                assert time.monotonic() < deadline, "the open stream did not get A's frames again"
            snap = fetch(b.url + "/snapshot")
            assert snap.status == 200 and snap.body is not None and snap.headers.get("x-placeholder") is None
            assert_served_by(collector, snap.body, "B's snapshot after the restart")
        finally:
            collector.close()


def test_snapshot_url_is_polled(start_server: StartServer) -> None:
    """A source URL that answers one image/jpeg (A's /snapshot) is fetched at the configured rate."""
    a = start_server(cameras=[virtual_cam("a", 320, 240, FPS)])
    collector = FrameCollector(a)
    try:
        b = start_server(cameras=[http_cam("b", f"http://127.0.0.1:{a.port}/snapshot", fps=5)])
        cam = streaming_passthrough(b)
        wait_status(b, lambda s: 3.5 <= camera_status(s, "b")["fps"] <= 6.5, 8, "B polling at about 5 fps")
        assert (cam["width"], cam["height"]) == (320, 240)
        snap = fetch(b.url + "/snapshot")
        assert snap.status == 200 and snap.body is not None and snap.headers.get("x-placeholder") is None
        assert_served_by(collector, snap.body, "B's snapshot")
        assert "single JPEG" in b.log_text()
    finally:
        collector.close()


# --------------------------------------------------------------------------------------------
# other servers
# --------------------------------------------------------------------------------------------


def make_frames(n: int = 12) -> list[bytes]:
    frames = []
    for i in range(n):
        img = np.full((240, 320, 3), (i * 20 % 256, 90, 200 - i * 10), np.uint8)
        cv2.putText(img, f"fake {i}", (20, 120), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 3)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 75])
        assert ok
        frames.append(buf.tobytes())
    return frames


class FakeMjpegServer:
    """An asyncio MJPEG server with framing edge itself never sends.

    ``lf``: an HTTP/1.0 close-delimited body, parts with LF line ends and no Content-Length, the
    boundary announced without quotes and sent with a transport-padding space.
    ``chunked``: HTTP/1.1 chunked transfer encoding with chunks that cut through parts at odd
    places, a quoted boundary, CRLF line ends, no Content-Length, the boundary before each part.
    """

    def __init__(self, frames: list[bytes], style: str) -> None:
        self.frames = frames
        self.style = style
        self.requests: list[bytes] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(5), "fake server did not start"

    def _run(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        loop.run_forever()
        server.close()
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            self.requests.append(head)
            if self.style == "lf":
                writer.write(
                    b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=fakeframe\r\n"
                    b"Cache-Control: no-cache\r\n\r\n"
                )
            else:
                writer.write(
                    b"HTTP/1.1 200 OK\r\n"
                    b'Content-Type: multipart/x-mixed-replace; boundary="--fake boundary"\r\n'
                    b"Transfer-Encoding: chunked\r\n\r\n"
                )
            i = 0
            while True:
                jpeg = self.frames[i % len(self.frames)]
                i += 1
                if self.style == "lf":
                    data = b"--fakeframe \nContent-Type: image/jpeg\n\n" + jpeg + b"\n"
                    writer.write(data)
                else:
                    data = b"----fake boundary\r\nContent-Type: image/jpeg\r\nX-Frame: %d\r\n\r\n" % i + jpeg + b"\r\n"
                    for k in range(0, len(data), 1777):  # chunks that cut headers and JPEGs anywhere
                        piece = data[k : k + 1777]
                        writer.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
                await writer.drain()
                await asyncio.sleep(1 / FPS)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.mark.parametrize("style", ["lf", "chunked"])
def test_unusual_multipart_framing_is_passed_through(start_server: StartServer, style: str) -> None:
    """Parts without Content-Length, with LF line ends (close-delimited) or inside chunked
    transfer encoding: every frame B serves is one of the fake server's frames, byte for byte."""
    frames = make_frames()
    known = {sha(f) for f in frames}
    fake = FakeMjpegServer(frames, style)
    try:
        b = start_server(cameras=[http_cam("b", f"http://user:Fake-pass-9876@127.0.0.1:{fake.port}/video?x=1")])
        cam = streaming_passthrough(b)
        assert (cam["width"], cam["height"]) == (320, 240)
        assert cam["frames_invalid"] == 0, cam
        with MjpegStream(b.host, b.port, "/stream", timeout=10) as s:
            parts = s.read_parts(len(frames) + 3)
        for i, part in enumerate(parts):
            assert sha(part.jpeg) in known, f"part {i} is not one of the fake server's frames"
        assert len({sha(p.jpeg) for p in parts}) >= len(frames) - 2
        request = fake.requests[0]
        assert request.startswith(b"GET /video?x=1 HTTP/1.1\r\n"), request
        token = base64.b64encode(b"user:Fake-pass-9876")
        assert b"Authorization: Basic " + token + b"\r\n" in request, request
    finally:
        fake.close()


class SilentServer:
    """Accepts connections and reads the request, then answers only ``head`` (maybe nothing) and
    stays silent with the connection open: a hung camera."""

    def __init__(self, head: bytes) -> None:
        self.head = head
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.conns.append(conn)
                conn.settimeout(5)
                with contextlib.suppress(OSError):
                    conn.recv(65536)
                    conn.sendall(self.head)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept(); close() alone would not
        self.sock.close()
        for conn in self.conns:
            conn.close()
        self._thread.join(5)


@pytest.mark.parametrize(
    ("head", "problem"),
    [
        (b"", "no answer for 5 s"),
        (b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=x\r\n\r\n--x\r\n", "no data for 2 s"),
    ],
    ids=["no-answer", "no-data"],
)
def test_silent_upstream_is_a_stall_and_does_not_hold_up_shutdown(
    start_server: StartServer, head: bytes, problem: str
) -> None:
    """An upstream that accepts and then says nothing: no answer (reconnecting after the 5 s
    answer timeout), or a stream head and no part (after stall_timeout, 2 s), with a problem that
    says so; B's shutdown is not held up by its capture thread waiting on the silent socket."""
    silent = SilentServer(head)
    try:
        b = start_server(cameras=[http_cam("b", f"http://127.0.0.1:{silent.port}/stream")])
        st = wait_camera_state(b, "b", "reconnecting", 10)
        assert problem in (camera_status(st, "b")["problem"] or ""), camera_status(st, "b")
        # Shut down while the capture thread is blocked reading the silent socket.
        wait_for(lambda: len(silent.conns) >= 2, 10, message="B connecting again")
        time.sleep(0.3)
        t0 = time.monotonic()
        assert b.stop() == 0
        took = time.monotonic() - t0
        assert took < 2.5, f"shutdown took {took:.1f} s"
        assert "capture thread still busy" not in b.log_text()
    finally:
        silent.close()


@requires("openssl")
def test_https_upstream_is_verified(start_server: StartServer, tmp_path: Path) -> None:
    """https:// is checked against the system's CAs: a self-signed upstream is refused with a
    problem that says why, and accepted when its certificate is trusted (SSL_CERT_FILE)."""
    cert, key = make_cert(tmp_path, "upstream")
    a = start_server(
        cameras=[virtual_cam("a", 320, 240, FPS)], server={"tls": {"certfile": str(cert), "keyfile": str(key)}}
    )
    url = f"https://127.0.0.1:{a.port}/stream"
    untrusting = start_server(cameras=[http_cam("b", url)])
    st = wait_camera_state(untrusting, "b", "reconnecting", 10)
    problem = camera_status(st, "b")["problem"] or ""
    assert "certificate" in problem, problem

    trusting = start_server(cameras=[http_cam("b", url)], env_extra={"SSL_CERT_FILE": str(cert)})
    streaming_passthrough(trusting)


class _QuietFileHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@requires("ffmpeg")
def test_other_content_goes_to_ffmpeg(start_server: StartServer, tmp_path: Path) -> None:
    """A URL that answers neither multipart nor a JPEG (here an AVI file, video/x-msvideo) is read
    through OpenCV's FFmpeg reader: frames are captured, and the log says why."""
    mjpeg_clip(tmp_path / "clip.avi", 4)
    with http_server(functools.partial(_QuietFileHandler, directory=str(tmp_path))) as port:
        b = start_server(cameras=[http_cam("b", f"http://127.0.0.1:{port}/clip.avi")])
        wait_status(b, lambda s: camera_status(s, "b")["frames_captured"] >= 30, 15, "frames read through FFmpeg")
        assert "not MJPEG: reading it through FFmpeg" in b.log_text()
        assert cam_of(b)["source_kind"] == "http"
