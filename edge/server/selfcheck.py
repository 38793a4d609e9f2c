"""At start-up, before the port opens: is this uvicorn the one the adapter was written for?

Everything in ``edge/server`` that reaches below uvicorn's (and the websockets library's)
public API is listed in :data:`_NEEDED`; :func:`check_uvicorn` builds uvicorn's objects and
looks for all of it (attributes set in ``__init__`` included, and a constructor whose signature
changed is caught as well), then sends one request and one WebSocket through edge's protocols
on a loopback socket, frames written past uvicorn included. An upgraded uvicorn that moved
something therefore fails at start-up with a message naming what and the supported version,
not mid-stream with a hung viewer or a corrupt chunk.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
from collections.abc import Callable
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from ..fanout.slot import Frame
from ..fanout.wire import wire_of
from .http import EdgeHttpProtocol
from .websocket import EdgeWebSocketProtocol

log = logging.getLogger("edge.server")

SUPPORTED = "0.54"
PROBE_TIMEOUT = 5.0
_PROBE_BODY = b"edge-fast-path-probe"


class AdapterError(Exception):
    """The installed uvicorn lacks something edge's server adapter relies on."""


def _unsupported(what: str) -> AdapterError:
    return AdapterError(
        f"uvicorn {uvicorn.__version__}: {what}; edge's server adapter (edge/server) was written for "
        f"uvicorn {SUPPORTED}: install the version pinned in pyproject.toml"
    )


# What the adapter uses below uvicorn's public API, by the object that must have it.
_NEEDED = {
    "HttpToolsProtocol": (
        "connection_made connection_lost data_received on_message_begin on_header on_headers_complete "
        "on_response_complete send_400_response _start_asgi_task pause_writing resume_writing shutdown "
        "flow cycle pipeline scope headers transport client server_state loop timeout_keep_alive_task"
    ),
    "FlowControl": "write_paused drain pause_writing resume_writing",
    "RequestResponseCycle": (
        "send response_started response_complete chunked_encoding keep_alive expected_content_length "
        "disconnected message_event scope"
    ),
    "WebSocketsSansIOProtocol": (
        "connection_made data_received handle_connect send_receive_event_to_app handle_parser_exception send "
        "shutdown pause_writing resume_writing writable conn close_sent handshake_complete handshake_initiated "
        "curr_msg_data_type frames transport queue close_timer read_paused loop client"
    ),
    "ServerProtocol": "fail close_sent data_to_send",  # the websockets library's, below uvicorn's
    "Server": "handle_exit startup shutdown should_exit _captured_signals",
}


class _ProbeTransport(asyncio.Transport):
    """Enough of a transport to build uvicorn's protocols without a socket."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        return None

    def get_write_buffer_size(self) -> int:
        return 0


def check_uvicorn(loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None) -> None:
    """Raise :class:`AdapterError`, naming what is missing or wrong, unless this uvicorn is one
    the adapter works with."""
    _check_objects(_build_objects())
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        try:
            runner.run(asyncio.wait_for(_probe_fast_path(), PROBE_TIMEOUT))
        except TimeoutError:
            what = f"a loopback request through edge's protocols got no answer in {PROBE_TIMEOUT:g} s"
            raise _unsupported(what) from None


def _build_objects() -> dict[str, object]:
    config = uvicorn.Config(_probe_app, lifespan="off", log_config=None)
    config.load()
    state = ServerState()
    transport = _ProbeTransport()
    loop = asyncio.new_event_loop()
    try:
        http = HttpToolsProtocol(config, state, {}, _loop=loop)
        http.connection_made(transport)
        ws = WebSocketsSansIOProtocol(config, state, {}, _loop=loop)
        cycle = RequestResponseCycle(
            scope=cast(Any, {}),
            transport=transport,
            flow=http.flow,
            logger=log,
            access_logger=log,
            access_log=False,
            default_headers=[],
            message_event=asyncio.Event(),
            expect_100_continue=False,
            keep_alive=True,
            on_response=lambda: None,
        )
        return {
            "HttpToolsProtocol": http,
            "FlowControl": http.flow,
            "RequestResponseCycle": cycle,
            "WebSocketsSansIOProtocol": ws,
            "ServerProtocol": ws.conn,
            "Server": uvicorn.Server(config),
        }
    except TypeError as exc:  # a constructor that takes other arguments now
        raise _unsupported(f"a constructor changed ({exc})") from None
    finally:
        loop.close()


def _check_objects(objects: dict[str, object]) -> None:
    for owner, names in _NEEDED.items():
        for name in names.split():
            if not hasattr(objects[owner], name):
                raise _unsupported(f"attribute {owner}.{name} missing")


def _probe_payload(frame: Frame) -> bytes:
    return frame.jpeg


_PROBE_FRAME = Frame(1, 0.0, _PROBE_BODY)


async def _probe_app(scope: Any, receive: Any, send: Any) -> None:
    """Writes a frame past uvicorn, between two body parts (HTTP) or after the accept (WebSocket)."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"<", "more_body": True})
        wire = wire_of(scope)
        wire.write(wire.frame(_probe_payload)(_PROBE_FRAME)[0])
        await send({"type": "http.response.body", "body": b">", "more_body": False})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        wire = wire_of(scope)
        wire.write(wire.frame(_probe_payload)(_PROBE_FRAME)[0])
        await send({"type": "websocket.close", "code": 1000})


async def _probe_fast_path() -> None:
    loop = asyncio.get_running_loop()
    config = uvicorn.Config(_probe_app, lifespan="off", log_config=None, ws=EdgeWebSocketProtocol)
    config.load()
    state = ServerState()
    server = await loop.create_server(
        lambda: EdgeHttpProtocol(config=config, server_state=state, app_state={}, _loop=loop),
        host="127.0.0.1",
        port=0,
        family=socket.AF_INET,
    )
    try:
        port = server.sockets[0].getsockname()[1]
        await _probe_http(port)
        await _probe_websocket(port)
    finally:
        server.close()
        for connection in list(state.connections):
            connection.shutdown()
        await server.wait_closed()


async def _probe_http(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /probe HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") or b"chunked" not in head.lower():
        raise _unsupported(f"a loopback request through edge's protocols got {head[:60]!r}")
    if _dechunk(body) != b"<" + _PROBE_BODY + b">":
        raise _unsupported("a frame written past uvicorn broke its chunked body (a loopback request got it wrong)")


async def _probe_websocket(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                "GET /probe HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        answer = await reader.read()
    finally:
        writer.close()
    head, _, frames = answer.partition(b"\r\n\r\n")
    expected = bytes((0x82, len(_PROBE_BODY))) + _PROBE_BODY
    if not head.startswith(b"HTTP/1.1 101") or not frames.startswith(expected):
        raise _unsupported("a frame written past the websockets library did not arrive as a binary message")


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        line, _, rest = body.partition(b"\r\n")
        try:
            size = int(line, 16)
        except ValueError:
            return bytes(out) + b"?"
        if size == 0:
            return bytes(out)
        out += rest[:size]
        body = rest[size + 2 :]
    return bytes(out) + b"?"
