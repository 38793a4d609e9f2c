"""Slow-reader rule (§4 and §5 of docs/interface.md): a client that stops reading must not slow the camera or
other clients, and when it resumes it must not be fed a backlog of old frames.

The stalled client uses a raw socket with a 4 KiB receive buffer, set before connect so the TCP
window stays tiny: whatever the server queues for it must then sit in the server's own
buffers, which is exactly what the rule limits.
"""

from __future__ import annotations

import time

import pytest

from tests.support.config import virtual_cam
from tests.support.frames import BackgroundReader, mjpeg_reader, read_for, ws_reader
from tests.support.mjpeg import MjpegStream
from tests.support.process import EdgeServer, StartServer
from tests.support.stale import check_stale_after_resume
from tests.support.status import camera_status, get_status, wait_no_clients
from tests.support.websocket import RawWebSocket

FPS = 30
STALL_S = 4.0
RCVBUF = 4096


@pytest.fixture(scope="module")
def srv(start_module_server: StartServer) -> EdgeServer:
    """640x480 at quality 90: frames of tens of KiB, so a backlog is easy to see."""
    return start_module_server(cameras=[virtual_cam("cam0", 640, 480, FPS, quality=90)], server={"max_clients": 16})


def stall_with_fast_reader(srv: EdgeServer) -> tuple[BackgroundReader, MjpegStream, float]:
    """Open a continuously reading MJPEG client; return it once it is flowing."""
    fast = MjpegStream(srv.host, srv.port, "/stream")
    reader = BackgroundReader(mjpeg_reader(fast), "fast")
    reader.wait_frames(5, 5, "fast reader flowing", interval=0.02)
    return reader, fast, time.time()


def check_fast_reader_during_stall(srv: EdgeServer, reader: BackgroundReader, t0: float, t1: float) -> None:
    """The fast reader and the capture keep the camera's rate while another client is stalled."""
    reader.check()
    got = reader.count_between(t0 + 0.5, t1)
    rate = got / (t1 - t0 - 0.5)
    assert rate >= 0.8 * FPS, f"fast reader got {rate:.1f} fps while another client stalled (camera {FPS})"
    measured = camera_status(get_status(srv), "cam0")["fps"]
    assert measured >= 0.8 * FPS, f"capture rate dropped to {measured} while a client stalled"


def test_stalled_mjpeg_reader(srv: EdgeServer) -> None:
    wait_no_clients(srv)
    reader, fast, _ = stall_with_fast_reader(srv)
    stalled = MjpegStream(srv.host, srv.port, "/stream", rcvbuf=RCVBUF)
    try:
        assert stalled.head is not None and stalled.head.status == 200
        t0 = time.time()
        time.sleep(STALL_S)  # the stall itself: a duration, not a synchronisation
        t1 = time.time()
        check_fast_reader_during_stall(srv, reader, t0, t1)

        resume_at = time.time()
        check_stale_after_resume(read_for(mjpeg_reader(stalled), 2.0), resume_at, min_fresh=10)
    finally:
        reader.stop(fast.close)
        stalled.close()


def test_stalled_websocket_reader(srv: EdgeServer) -> None:
    wait_no_clients(srv)
    reader, fast, _ = stall_with_fast_reader(srv)
    ws = RawWebSocket(srv.host, srv.port, "/ws", rcvbuf=RCVBUF)
    try:
        hello = ws.recv_json()
        assert hello["type"] == "hello"
        t0 = time.time()
        time.sleep(STALL_S)  # the stall itself
        t1 = time.time()
        check_fast_reader_during_stall(srv, reader, t0, t1)

        resume_at = time.time()
        frames = read_for(ws_reader(ws), 2.0)
        seqs = [f.seq for f in frames]
        assert seqs == sorted(set(seqs)), f"sequence numbers not rising: {seqs}"
        check_stale_after_resume(frames, resume_at, min_fresh=10)
    finally:
        reader.stop(fast.close)
        ws.close()
