"""Process lifecycle (§1 of docs/interface.md): clean, fast shutdown on SIGTERM/SIGINT even with a stalled
client, and exit status 1 (not a traceback) when the port is taken.

Service managers send SIGTERM and escalate to SIGKILL after a grace period; a stalled viewer
must not be able to hold the process (and the camera device) past 5 s.
"""

from __future__ import annotations

import signal
import socket
import time

import pytest

from tests.support.config import virtual_cam
from tests.support.frames import BackgroundReader, mjpeg_reader, ws_reader
from tests.support.mjpeg import MjpegStream
from tests.support.process import HOST, StartServer
from tests.support.status import all_clients, wait_status
from tests.support.waiting import wait_for
from tests.support.websocket import RawWebSocket


def test_sigterm_with_open_and_stalled_streams(start_server: StartServer) -> None:
    srv = start_server(cameras=[virtual_cam("cam0", 320, 240, 30)])
    stalled = MjpegStream(srv.host, srv.port, "/stream", rcvbuf=4096)  # never read again
    normal = MjpegStream(srv.host, srv.port, "/stream")
    normal_reader = BackgroundReader(mjpeg_reader(normal), "normal")
    ws = RawWebSocket(srv.host, srv.port, "/ws")
    assert ws.recv_json()["type"] == "hello"
    ws_bg = BackgroundReader(ws_reader(ws), "ws")
    try:
        wait_status(srv, lambda st: len(all_clients(st)) == 3, 5, "3 clients connected")
        wait_for(lambda: normal_reader.count() >= 3 and ws_bg.count() >= 3, 5, message="frames flowing")

        # the stalled client is really stalled: the normal reader has got well ahead of it
        def sent(st: dict, port: int) -> int:
            return next(c["frames_sent"] for c in all_clients(st) if c["remote"] == f"127.0.0.1:{port}")

        wait_status(
            srv,
            lambda st: sent(st, normal.local_port) >= sent(st, stalled.local_port) + 15,
            10,
            "the stalled client to fall behind",
        )

        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        rc = srv.proc.wait(10)
        elapsed = time.monotonic() - t0
        assert rc == 0, f"exit status {rc} after SIGTERM\n{srv.log_text()[-3000:]}"
        assert elapsed <= 5.0, f"shutdown took {elapsed:.1f}s with a stalled client"

        # the streams ended (EOF or reset), they did not just stop delivering
        assert normal_reader.ended.wait(5), "normal MJPEG reader's stream did not end"
        assert ws_bg.ended.wait(5), "WebSocket stream did not end"
        srv.assert_clean_log()
    finally:
        normal_reader.stop(normal.close)
        ws_bg.stop(ws.close)
        stalled.close()


def test_sigint_exits_0(start_server: StartServer) -> None:
    srv = start_server(cameras=[virtual_cam("cam0", 160, 120, 10)])
    with MjpegStream(srv.host, srv.port, "/stream") as s:
        s.read_part()
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGINT)
        rc = srv.proc.wait(10)
    assert rc == 0, f"exit status {rc} after SIGINT\n{srv.log_text()[-3000:]}"
    assert time.monotonic() - t0 <= 5.0
    srv.assert_clean_log()


def test_port_in_use_exits_1(start_server: StartServer) -> None:
    with socket.socket() as blocker:
        blocker.bind((HOST, 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        srv = start_server(cameras=[virtual_cam("cam0", 160, 120, 10)], port=port, wait_listening=False)
        try:
            rc = srv.proc.wait(30)
        except Exception:
            pytest.fail(f"server did not exit with port {port} in use\n{srv.log_text()}")
    srv.stop()
    log = srv.log_text()
    assert rc == 1, f"exit status {rc} with port in use\n{log}"
    assert "Traceback" not in log, log
    assert log.strip(), "no message on stderr"
    assert any(w in log.lower() for w in ("in use", "address", str(port))), log
