"""Regressions found in review: bad input and shutdown races that once produced tracebacks,
stuck shutdowns or an unbounded flood allowance."""

from __future__ import annotations

import json
import signal
import socket
import struct
import time

import pytest

from tests.support.config import virtual_cam
from tests.support.http import fetch
from tests.support.mjpeg import MjpegStream
from tests.support.process import EdgeServer, StartServer
from tests.support.sockets import StreamEnded
from tests.support.status import wait_no_clients
from tests.support.waiting import wait_for
from tests.support.websocket import RawWebSocket


@pytest.fixture(scope="module")
def srv(start_module_server: StartServer) -> EdgeServer:
    return start_module_server(cameras=[virtual_cam("cam0", 160, 120, 30)], server={"max_clients": 16})


def test_absurdly_small_fps_is_rejected_not_a_crash(srv: EdgeServer) -> None:
    """5e-324 > 0, but a cap that small made the rate arithmetic overflow."""
    res = fetch(srv.url + "/stream?fps=5e-324")
    assert res.status == 400 and "fps" in res.json()["error"]
    ws = RawWebSocket(srv.host, srv.port, "/ws")
    try:
        ws.recv_json()
        ws.send_text(json.dumps({"type": "settings", "fps": 5e-324}))
        assert ws.recv_text()["type"] == "error"
        ws.recv_binary()  # still streaming
    finally:
        ws.close()
    srv.assert_clean_log(allow_error_lines=False)


def test_text_message_that_is_not_utf8_closes_1007_without_traceback(srv: EdgeServer) -> None:
    ws = RawWebSocket(srv.host, srv.port, "/ws")
    try:
        ws.recv_json()
        ws.send(ws.OP_TEXT, b'{"type": "ack", "seq": 1}\xff\xfe')
        assert ws.recv_close() == 1007
    finally:
        ws.close()
    wait_no_clients(srv)
    srv.assert_clean_log(allow_error_lines=False)


def test_free_acks_do_not_accumulate_into_a_flood_allowance(srv: EdgeServer) -> None:
    """One ack per frame sent is free, but not a stock of them: a client that read 2 s of
    frames without acking and then sends 200 acks at once is flooding (with the allowance
    accumulating, 150 of them would have been free and 50 under the limit)."""
    ws = RawWebSocket(srv.host, srv.port, "/ws")
    try:
        ws.recv_json()
        deadline = time.monotonic() + 5.0
        last = 0
        while time.monotonic() < deadline:
            last = ws.recv_binary().seq
        assert last > 120
        burst = b"".join(_masked_text(json.dumps({"type": "ack", "seq": last})) for _ in range(200))
        ws.sock.sendall(burst)
        code = None
        deadline = time.monotonic() + 10
        with pytest.raises(StreamEnded):
            while time.monotonic() < deadline:
                ws.recv_binary()
        code = ws.close_code
        assert code == 1008
    finally:
        ws.close()


def _masked_text(text: str) -> bytes:
    payload = text.encode()
    assert len(payload) < 126
    mask = b"\x00\x00\x00\x00"  # a zero mask is a valid mask and keeps the payload readable
    return struct.pack(">BB", 0x81, 0x80 | len(payload)) + mask + payload


def test_stream_opened_during_shutdown_does_not_hold_it_up(start_server: StartServer) -> None:
    """A viewer reconnecting in the second after SIGTERM (the page retries after 0.5 s) gets
    a 503 or a closed connection, and shutdown still ends cleanly and quickly."""
    srv = start_server(cameras=[virtual_cam("cam0", 320, 240, 30)])
    stalled = MjpegStream(srv.host, srv.port, "/stream", rcvbuf=4096)  # keeps the grace period busy
    try:
        wait_for(lambda: "stream opened" in srv.log_text(), 5, 0.05, "stalled stream registered")
        started = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        # The listener stays open during the grace period that ends running streams.
        wait_for(lambda: "shutting down: ending open streams" in srv.log_text(), 3, 0.01, "shutdown began")
        late_status = _late_stream_status(srv)
        rc = srv.proc.wait(10)
        elapsed = time.monotonic() - started
    finally:
        stalled.close()
    assert rc == 0 and elapsed < 5, f"exit {rc} after {elapsed:.1f} s"
    assert late_status in (503, None), f"a stream opened during shutdown got {late_status}"
    srv.assert_clean_log(allow_error_lines=False)


def _late_stream_status(srv: EdgeServer) -> int | None:
    """Status of a stream request made during shutdown, or None if the connection was refused/closed."""
    try:
        sock = socket.create_connection((srv.host, srv.port), timeout=3)
    except OSError:
        return None
    try:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        head = sock.recv(200)
    except OSError:
        return None
    finally:
        sock.close()
    return int(head.split()[1]) if head.startswith(b"HTTP/") else None


def test_shutdown_with_several_stuck_sources_is_prompt(start_server: StartServer) -> None:
    """URL cameras whose server accepts but never answers block inside OpenCV; shutdown must
    not wait for them one after another."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/stream.mjpg"
    try:
        srv = start_server(cameras=[virtual_cam(f"cam{i}", 160, 120, 10, source=url) for i in range(4)])
        started = time.monotonic()
        rc = srv.stop(signal.SIGTERM, timeout=10)
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert rc == 0 and elapsed < 5, f"exit {rc} after {elapsed:.1f} s"
