"""The broadcast fast path (issue 10) against a real server process: frames written straight to
every viewer's transport. (`test_broadcast.py` has the broadcast's unit tests, in process.)

* A stalled viewer among several fast MJPEG and WebSocket viewers: the broadcast skips it while
  it is paused, the others keep the camera's rate, and once it reads again it gets at most two
  stale frames (or 256 KiB) and then only fresh ones: the same bound as before the fast path.
* The start-up self-check of the server adapter (edge/server/selfcheck.py): with an attribute of uvicorn's
  internals missing, edge refuses to start and names it, instead of hanging streams later.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from edge.__main__ import main
from edge.server.selfcheck import AdapterError, check_uvicorn
from tests.support.config import virtual_cam, write_config
from tests.support.frames import BackgroundReader, mjpeg_reader, read_for, ws_reader
from tests.support.mjpeg import MjpegStream
from tests.support.process import EdgeServer, StartServer
from tests.support.stale import check_stale_after_resume
from tests.support.status import wait_no_clients
from tests.support.waiting import wait_for
from tests.support.websocket import RawWebSocket

FPS = 30
STALL_S = 3.0
RCVBUF = 4096


@pytest.fixture(scope="module")
def srv(start_module_server: StartServer) -> EdgeServer:
    """640x480 at quality 90: frames of tens of KiB, so a stalled client pauses at once."""
    return start_module_server(cameras=[virtual_cam("cam0", 640, 480, FPS, quality=90)], server={"max_clients": 32})


def test_stalled_viewers_among_fast_ones_get_fresh_frames_after_resuming(srv: EdgeServer) -> None:
    wait_no_clients(srv)
    fast_streams = [MjpegStream(srv.host, srv.port, "/stream") for _ in range(4)]
    fast_ws = [RawWebSocket(srv.host, srv.port, "/ws") for _ in range(2)]
    for ws in fast_ws:
        assert ws.recv_json()["type"] == "hello"
    readers = [BackgroundReader(mjpeg_reader(s), f"fast-mjpeg-{i}") for i, s in enumerate(fast_streams)]
    readers += [BackgroundReader(ws_reader(w), f"fast-ws-{i}") for i, w in enumerate(fast_ws)]
    stalled_mjpeg = MjpegStream(srv.host, srv.port, "/stream", rcvbuf=RCVBUF)
    stalled_ws = RawWebSocket(srv.host, srv.port, "/ws", rcvbuf=RCVBUF)
    try:
        assert stalled_ws.recv_json()["type"] == "hello"
        wait_for(lambda: all(r.count() >= 5 or r.error for r in readers), 10, 0.02, "fast viewers flowing")
        t0 = time.time()
        time.sleep(STALL_S)  # the stall itself: a duration, not a synchronisation
        t1 = time.time()
        for reader in readers:
            reader.check()
            rate = reader.count_between(t0 + 0.5, t1) / (t1 - t0 - 0.5)
            # Six Python reader threads share two cores with the server here: 0.6 leaves room for
            # that; a viewer held back by a stalled one gets a fraction of it, or nothing.
            assert rate >= 0.6 * FPS, f"a fast viewer got {rate:.1f} fps while two others stalled"

        resume_at = time.time()
        check_stale_after_resume(read_for(mjpeg_reader(stalled_mjpeg), 1.5), resume_at, min_fresh=10)
        check_stale_after_resume(read_for(ws_reader(stalled_ws), 1.5), resume_at, min_fresh=10)
        for reader in readers:
            reader.check()
    finally:
        for reader, closer in zip(readers, [s.close for s in fast_streams] + [w.close for w in fast_ws], strict=True):
            reader.stop(closer)
        stalled_mjpeg.close()
        stalled_ws.close()


@pytest.mark.parametrize(
    ("owner", "name"),
    [(HttpToolsProtocol, "_start_asgi_task"), (WebSocketsSansIOProtocol, "handle_parser_exception")],
    ids=["http-protocol", "websocket-protocol"],
)
def test_self_check_names_a_missing_uvicorn_attribute(monkeypatch: pytest.MonkeyPatch, owner: type, name: str) -> None:
    check_uvicorn()  # the pinned uvicorn passes
    monkeypatch.delattr(owner, name)
    with pytest.raises(AdapterError, match=rf"uvicorn \S+: attribute {owner.__name__}\.{name} missing"):
        check_uvicorn()


def test_self_check_failure_stops_the_start_with_exit_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m edge` runs the check before it binds: exit 1 and one ERROR line naming the attribute."""
    config = write_config(tmp_path / "edge.yaml", [virtual_cam("cam0", 160, 120, 5)], {"port": 0})
    monkeypatch.delattr(HttpToolsProtocol, "on_headers_complete")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        code = main(["--config", str(config), "--log-level", "error"])
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    err = capsys.readouterr().err
    assert code == 1
    lines = [line for line in err.splitlines() if " ERROR " in line]
    assert len(lines) == 1 and "HttpToolsProtocol.on_headers_complete missing" in lines[0], err
    assert "listening on" not in err
