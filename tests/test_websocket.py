"""WebSocket frame channel (§5 of docs/interface.md), driven by the `websockets` client library.

Covers the hello message, the binary frame header, ack mode (a viewer that paces the server
by acknowledging shown frames), per-connection fps, protocol errors that must not kill the
connection, policy violations that must (1008), max_clients (1013) and unknown cameras (404).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.config import virtual_cam
from tests.support.http import fetch
from tests.support.jpeg import decode_jpeg
from tests.support.mjpeg import MjpegStream
from tests.support.process import EdgeServer, StartServer
from tests.support.status import all_clients, get_status, wait_status
from tests.support.websocket import WsFrame, connect_ws, parse_ws_frame

FPS = 30


def ws_connect(srv: EdgeServer, path: str = "/ws") -> Any:
    """The library client on `path` of `srv`, with the suite's settings (an `async with`)."""
    return connect_ws(srv.ws_url + path)


async def recv(ws: ClientConnection, timeout: float) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), timeout)


async def recv_hello(ws: ClientConnection) -> dict[str, Any]:
    msg = await recv(ws, 5)
    assert isinstance(msg, str), "the first message must be the text hello"
    hello = json.loads(msg)
    assert hello.get("type") == "hello", hello
    return hello


async def recv_frame(ws: ClientConnection, timeout: float = 5) -> WsFrame:
    """Next binary frame, failing on anything but error-free text in between."""
    deadline = time.monotonic() + timeout
    while True:
        msg = await recv(ws, max(0.01, deadline - time.monotonic()))
        if isinstance(msg, bytes):
            return parse_ws_frame(msg)
        raise AssertionError(f"unexpected text message while waiting for a frame: {msg}")


async def recv_text(ws: ClientConnection, timeout: float = 5) -> dict[str, Any]:
    """Next text message as JSON, skipping binary frames that are interleaved with it."""
    deadline = time.monotonic() + timeout
    while True:
        msg = await recv(ws, max(0.01, deadline - time.monotonic()))
        if isinstance(msg, str):
            return json.loads(msg)


async def expect_close(ws: ClientConnection, timeout: float = 5) -> int | None:
    """Read until the server closes; return the close code it sent."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            await recv(ws, max(0.01, deadline - time.monotonic()))
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else None
    except TimeoutError:
        raise AssertionError(f"the server did not close the connection within {timeout}s") from None


async def silence(ws: ClientConnection, quiet: float, limit: float) -> list[str | bytes]:
    """Collect messages until none arrives for `quiet` s; fail if that takes over `limit` s."""
    got: list[str | bytes] = []
    deadline = time.monotonic() + limit
    while True:
        try:
            got.append(await recv(ws, quiet))
        except TimeoutError:
            return got
        assert time.monotonic() < deadline, f"messages kept coming for {limit}s ({len(got)} received)"


async def astatus(srv: EdgeServer) -> dict[str, Any]:
    return await asyncio.to_thread(get_status, srv)


@pytest.fixture(scope="module")
def srv(start_module_server: StartServer) -> EdgeServer:
    return start_module_server(cameras=[virtual_cam("cam0", 320, 240, FPS)], server={"max_clients": 16})


@pytest.fixture(scope="module")
def small(start_module_server: StartServer) -> EdgeServer:
    """A server with max_clients: 2 for the over-capacity tests."""
    return start_module_server(cameras=[virtual_cam("cam0", 160, 120, 15)], server={"max_clients": 2})


@pytest.mark.asyncio
async def test_hello_and_id_in_status(srv: EdgeServer) -> None:
    async with ws_connect(srv) as ws:
        hello = await recv_hello(ws)
        assert hello["camera"] == "cam0"
        assert (hello["width"], hello["height"]) == (320, 240)
        assert hello["fps"] == FPS  # the configured rate
        assert isinstance(hello["id"], str) and hello["id"], hello
        st = await astatus(srv)
        entries = [c for c in all_clients(st) if c["id"] == hello["id"]]
        assert len(entries) == 1, all_clients(st)
        assert entries[0]["kind"] == "websocket"


@pytest.mark.asyncio
async def test_camera_path_form(srv: EdgeServer) -> None:
    async with ws_connect(srv, "/cameras/cam0/ws") as ws:
        assert (await recv_hello(ws))["camera"] == "cam0"
        decode_jpeg((await recv_frame(ws)).jpeg)


@pytest.mark.asyncio
async def test_binary_frames(srv: EdgeServer) -> None:
    """uint64 BE seq increasing, float64 BE capture time close to now, decodable JPEG."""
    async with ws_connect(srv) as ws:
        await recv_hello(ws)
        last_seq = -1
        last_ts = 0.0
        for _ in range(8):
            frame = await recv_frame(ws)
            now = time.time()
            assert frame.seq > last_seq, (frame.seq, last_seq)
            assert frame.timestamp > last_ts
            assert now - 3 < frame.timestamp <= now + 0.05, (frame.timestamp, now)
            img = decode_jpeg(frame.jpeg)
            assert (img.shape[1], img.shape[0]) == (320, 240)
            last_seq, last_ts = frame.seq, frame.timestamp


@pytest.mark.asyncio
async def test_ack_mode_paces_frames(srv: EdgeServer) -> None:
    """With ack: true, no frame follows an unacknowledged one; acking releases exactly one."""
    async with ws_connect(srv) as ws:
        await recv_hello(ws)
        frames = [await recv_frame(ws)]
        t_sent = time.time()
        await ws.send(json.dumps({"type": "settings", "ack": True}))
        # Frames already on the way drain; at most one captured after the switch; then silence.
        drained = await silence(ws, quiet=0.6, limit=4)
        texts = [m for m in drained if isinstance(m, str)]
        assert not texts, f"valid settings answered with {texts}"
        frames += [parse_ws_frame(m) for m in drained if isinstance(m, bytes)]
        after = [f for f in frames if f.timestamp > t_sent]
        assert len(after) <= 1, f"{len(after)} frames captured after enabling ack mode were sent unacked"
        last = frames[-1]

        for _ in range(3):
            await ws.send(json.dumps({"type": "ack", "seq": last.seq}))
            nxt = await recv_frame(ws, 3)
            assert nxt.seq > last.seq
            extra = await silence(ws, quiet=0.5, limit=0.6)
            assert not extra, f"{len(extra)} message(s) arrived after a single ack"
            last = nxt

        # An ack for an older frame than the last one sent releases nothing.
        await ws.send(json.dumps({"type": "ack", "seq": last.seq - 1}))
        assert not await silence(ws, quiet=0.5, limit=0.6), "a stale ack released a frame"

        # Turning ack mode off resumes the continuous flow (the omitted fps keeps its value).
        await ws.send(json.dumps({"type": "settings", "ack": False}))
        t0 = time.monotonic()
        count = 0
        while time.monotonic() - t0 < 1.0:
            await recv_frame(ws, 2)
            count += 1
        assert count >= 0.6 * FPS, f"only {count} frames in 1 s after ack mode off"


@pytest.mark.asyncio
async def test_settings_fps_caps_rate(srv: EdgeServer) -> None:
    async with ws_connect(srv) as ws:
        await recv_hello(ws)
        await ws.send(json.dumps({"type": "settings", "fps": 5}))
        # let frames sent before the cap took effect pass
        settle = time.monotonic() + 0.5
        while time.monotonic() < settle:
            try:
                await recv(ws, max(0.01, settle - time.monotonic()))
            except TimeoutError:
                break
        t0 = time.monotonic()
        count = 0
        seqs: list[int] = []
        while time.monotonic() - t0 < 2.5:
            frame = await recv_frame(ws, 2)
            seqs.append(frame.seq)
            count += 1
        rate = count / (time.monotonic() - t0)
        assert 3.5 <= rate <= 6.5, f"measured {rate:.2f} fps with fps=5 (camera {FPS})"
        assert seqs == sorted(set(seqs))


BAD_MESSAGES = [
    "not json",
    "[1, 2, 3]",
    json.dumps({"type": "nonsense"}),
    json.dumps({"no": "type"}),
    json.dumps({"type": "settings", "fps": 0}),
    json.dumps({"type": "settings", "fps": "abc"}),
    json.dumps({"type": "settings", "fps": FPS * 10}),
    json.dumps({"type": "settings", "ack": "yes"}),
    json.dumps({"type": "ack", "seq": "x"}),
    json.dumps({"type": "ack"}),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("message", BAD_MESSAGES)
async def test_bad_message_gets_error_and_connection_stays(srv: EdgeServer, message: str) -> None:
    async with ws_connect(srv) as ws:
        await recv_hello(ws)
        await ws.send(message)
        reply = await recv_text(ws, 5)
        assert reply.get("type") == "error", reply
        assert isinstance(reply.get("message"), str) and reply["message"], reply
        # still open and streaming at the full rate (a bad fps must not have been applied)
        frames = [await recv_frame(ws, 3) for _ in range(3)]
        assert frames[-1].seq > frames[0].seq


@pytest.mark.asyncio
async def test_binary_message_closes_1008(srv: EdgeServer) -> None:
    async with ws_connect(srv) as ws:
        await recv_hello(ws)
        await ws.send(b"\x00\x01binary")
        assert await expect_close(ws, 5) == 1008


@pytest.mark.asyncio
async def test_flood_closes_1008(srv: EdgeServer) -> None:
    """300 messages at once (> 100/s) is a flood: the server closes with 1008."""
    async with ws_connect(srv) as ws:
        await recv_hello(ws)
        msg = json.dumps({"type": "settings", "fps": 10})
        try:
            for _ in range(300):
                await ws.send(msg)
        except ConnectionClosed:
            pass
        assert await expect_close(ws, 5) == 1008


@pytest.mark.asyncio
async def test_unknown_camera_upgrade_is_404(srv: EdgeServer) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with ws_connect(srv, "/cameras/nope/ws"):
            pass
    assert info.value.response.status_code == 404


@pytest.mark.asyncio
async def test_max_clients_ws_1013_and_mjpeg_503(small: EdgeServer) -> None:
    """With max_clients 2 and two streams open, a 3rd WS is closed 1013, a 3rd MJPEG gets 503."""
    await asyncio.to_thread(wait_status, small, lambda s: not all_clients(s), 5, "no clients")
    mj = await asyncio.to_thread(MjpegStream, small.host, small.port, "/stream")
    try:
        assert mj.head is not None and mj.head.status == 200
        async with ws_connect(small) as ws1:
            await recv_hello(ws1)
            await asyncio.to_thread(wait_status, small, lambda s: len(all_clients(s)) == 2, 5, "2 clients")
            async with ws_connect(small) as ws3:
                assert await expect_close(ws3, 5) == 1013
            r = await asyncio.to_thread(fetch, small.url + "/stream")
            assert r.status == 503, r.status
            assert r.headers.get("retry-after"), r.headers
            st = await astatus(small)
            assert len(all_clients(st)) == 2, all_clients(st)
            # the two accepted streams keep working
            await recv_frame(ws1, 3)
        # a slot was released: a new WebSocket is served
        await asyncio.to_thread(wait_status, small, lambda s: len(all_clients(s)) == 1, 5, "1 client")
        async with ws_connect(small) as ws4:
            await recv_hello(ws4)
            await recv_frame(ws4, 3)
    finally:
        mj.close()
