"""Client churn: hundreds of clients that vanish mid-frame must leave no trace.

Phones on flaky Wi-Fi drop connections in the middle of a frame all day long; every such drop
must release its status entry, its max_clients slot and its memory, and must not be logged as
an error or a traceback.
"""

from __future__ import annotations

import pytest

from tests.support.config import virtual_cam
from tests.support.http import fetch
from tests.support.jpeg import decode_jpeg
from tests.support.mjpeg import MjpegStream
from tests.support.process import EdgeServer, StartServer
from tests.support.status import all_clients, wait_no_clients, wait_status
from tests.support.websocket import RawWebSocket

MAX_CLIENTS = 40
BATCH = 30
WS_PER_BATCH = 6
BATCHES = 10  # 300 clients
RSS_GROWTH_LIMIT_KIB = 30 * 1024


@pytest.fixture(scope="module")
def srv(start_module_server: StartServer) -> EdgeServer:
    return start_module_server(cameras=[virtual_cam("cam0", 320, 240, 30)], server={"max_clients": MAX_CLIENTS})


def churn_batch(srv: EdgeServer, batch_no: int) -> None:
    """Open BATCH clients at once, read each into the middle of a frame, then drop them all.

    Half are dropped with RST (SO_LINGER 0), half with a plain close.
    """
    mjpegs = [MjpegStream(srv.host, srv.port, "/stream", read_head=False) for _ in range(BATCH - WS_PER_BATCH)]
    sockets: list[MjpegStream | RawWebSocket] = list(mjpegs)
    try:
        for s in mjpegs:
            head = s.read_head()
            assert head.status == 200, f"batch {batch_no}: stream answered {head.status}"
            s.read_into_jpeg()  # the part headers and a few JPEG bytes: mid-frame
        for _ in range(WS_PER_BATCH):
            ws = RawWebSocket(srv.host, srv.port, "/ws")
            sockets.append(ws)
            assert ws.recv_json()["type"] == "hello"
            ws.reader.read_exact(4)  # the start of a binary frame: mid-message
    finally:
        for i, s in enumerate(sockets):
            s.close(rst=(i + batch_no) % 2 == 0)


def test_churn_leaves_no_clients_memory_or_errors(srv: EdgeServer) -> None:
    for b in range(2):  # warm-up: let caches, pools and allocator arenas settle
        churn_batch(srv, b)
        wait_no_clients(srv, 10)
    rss_before = srv.rss_kib()
    for b in range(BATCHES):
        churn_batch(srv, b)
        wait_no_clients(srv, 10)
    rss_after = srv.rss_kib()
    growth = rss_after - rss_before
    assert growth < RSS_GROWTH_LIMIT_KIB, (
        f"RSS grew by {growth / 1024:.1f} MiB over {BATCH * BATCHES} vanished clients ({rss_before} -> {rss_after} KiB)"
    )
    assert srv.proc.poll() is None
    srv.assert_clean_log(allow_error_lines=False)


def test_slots_released_after_churn(srv: EdgeServer) -> None:
    """After the churn, all max_clients slots are free again: exactly MAX_CLIENTS are served."""
    wait_no_clients(srv, 10)
    streams = [MjpegStream(srv.host, srv.port, "/stream") for _ in range(MAX_CLIENTS - 1)]
    ws: RawWebSocket | None = None
    try:
        for s in streams:
            assert s.head is not None and s.head.status == 200, s.head.raw if s.head else None
        ws = RawWebSocket(srv.host, srv.port, "/ws")
        assert ws.recv_json()["type"] == "hello"
        for s in streams:
            decode_jpeg(s.read_part().jpeg)
        ws.recv_binary()
        wait_status(srv, lambda st: len(all_clients(st)) == MAX_CLIENTS, 5, f"{MAX_CLIENTS} clients")
        over = fetch(srv.url + "/stream")
        assert over.status == 503, over.status
        assert over.headers.get("retry-after")
    finally:
        for s in streams:
            s.close()
        if ws is not None:
            ws.close()
    wait_no_clients(srv, 10)
    srv.assert_clean_log(allow_error_lines=False)
