"""uvicorn setup: the listening socket, per-connection buffers, shutdown and signals.

Everything here corrects a uvicorn 0.54 behaviour that matters for endless streams:

* httptools sends a chunked body even to HTTP/1.0 clients, which cannot parse it: an
  HTTP/1.0 response without a length gets a close-delimited body instead;
* buffers that hide a slow reader from us: see ``pump.py`` for the bounded-backlog
  mechanism; this module sets ``TCP_NOTSENT_LOWAT`` and the zero high-water mark, and
  tells the endpoints when a connection is writable (the ``edge.flow`` scope extension);
* shutdown waits for open connections (forever by default) before the app hears of
  it, a stalled reader never drains, and a signal is re-raised so the exit status is
  143: streams are ended first, stalled connections are aborted, and a signal-driven
  shutdown returns normally so the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from .pump import FLOW_EXTENSION, Flow

log = logging.getLogger("edge.server")

# Unsent bytes below which the kernel reports a connection writable. Measured with the
# throttled benchmark client (16 KB/s): 16 KiB gave frames 3.0 s old at the median, 4 KiB
# 2.3 s, 1 byte 2.5 s; fast clients' rate and CPU did not change measurably.
NOTSENT_LOWAT = 4 * 1024
STREAM_STOP_GRACE = 1.0  # seconds streams get to end cleanly before stalled ones are aborted
GRACEFUL_SHUTDOWN_TIMEOUT = 2.0
_UNBOUNDED = 1 << 62


class ListenError(Exception):
    """The address cannot be bound (in use, not local, no permission)."""


def listen_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Set on the listener, inherited by every accepted socket.
        sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, "TCP_NOTSENT_LOWAT", 25), NOTSENT_LOWAT)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


class _Http10Cycle(RequestResponseCycle):
    """HTTP/1.0 knows no chunked encoding: a body without a length is ended by closing."""

    close_delimited = False

    async def send(self, message: Any) -> None:
        if message["type"] == "http.response.start" and not self.response_started:
            names = {name.lower() for name, _ in message.get("headers", [])}
            if b"content-length" not in names and self.scope["method"] != "HEAD":
                self.close_delimited = True
                self.chunked_encoding = False
                self.keep_alive = False
                self.expected_content_length = _UNBOUNDED
        elif self.close_delimited and message["type"] == "http.response.body" and not message.get("more_body"):
            self.expected_content_length = len(message.get("body", b""))
        await super().send(message)


def _stalled(transport: asyncio.Transport) -> bool:
    return transport.get_write_buffer_size() > 0


class EdgeHttpProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Zero high-water mark: writing pauses as soon as the kernel refuses a byte.
        transport.set_write_buffer_limits(high=0)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is None or cycle.scope is not self.scope:  # a WebSocket upgrade
            return
        if self.scope["http_version"] == "1.0":
            # The cycle's task has not run yet, so switching its class is safe.
            cycle.__class__ = _Http10Cycle
        self.scope.setdefault("extensions", {})[FLOW_EXTENSION] = Flow(self.flow.drain, self.transport.abort)  # type: ignore[typeddict-unknown-key]

    def shutdown(self) -> None:
        if self.cycle is not None and not self.cycle.response_complete and _stalled(self.transport):
            self.transport.abort()  # the client stopped reading; it would never drain
            return
        super().shutdown()


class EdgeWebSocketProtocol(WebSocketsSansIOProtocol):
    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][FLOW_EXTENSION] = Flow(self.writable.wait, self.transport.abort)  # type: ignore[typeddict-unknown-key]

    def send_receive_event_to_app(self) -> None:
        # uvicorn logs a traceback at ERROR for a text message that is not UTF-8; that is the
        # client's fault, so close with 1007 (invalid data) and say so at INFO instead.
        if self.curr_msg_data_type == "text":
            try:
                b"".join(self.frames).decode()
            except UnicodeDecodeError:
                self.frames = []
                self.logger.info("closing with 1007: a text message was not valid UTF-8")
                self.conn.fail(1007, "invalid UTF-8 in a text message")
                self.handle_parser_exception()
                return
        super().send_receive_event_to_app()

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            # uvicorn forgets that a denial response ends the handshake and then logs an
            # error for a 404 we sent on purpose.
            self.handshake_complete = True

    def shutdown(self) -> None:
        if _stalled(self.transport):
            self.transport.abort()
            return
        super().shutdown()


class EdgeServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        stop_streams: Callable[[float], Awaitable[bool]],
        on_started: Callable[[], None],
    ) -> None:
        super().__init__(config)
        self._stop_streams = stop_streams
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_started()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Streams never end on their own, and uvicorn waits for them before telling the
        # app to shut down: end them first; those stuck on a client that stopped reading
        # are aborted by the protocols' shutdown() below.
        log.info("shutting down: ending open streams")
        if not await self._stop_streams(STREAM_STOP_GRACE):
            log.info("some streams did not end within %.1f s; aborting them", STREAM_STOP_GRACE)
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Unlike uvicorn, do not remember the signal to re-raise it after shutdown: a
        # requested shutdown that went well exits 0, not 128+signal.
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True


def uvicorn_config(app: Any, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        http=EdgeHttpProtocol,
        ws=EdgeWebSocketProtocol,
        ws_per_message_deflate=False,  # JPEGs do not compress; deflate only burns CPU
        ws_max_size=64 * 1024,  # client messages are small JSON
        # No keepalive pings: a viewer that stops reading cannot answer them, and would be
        # closed after 40 s instead of getting fresh frames when it reads again (contract
        # §5); a dead peer still surfaces as a failed send, and shutdown aborts stalled ones.
        ws_ping_interval=None,
        lifespan="on",
        access_log=False,  # one line per stream comes from connections.py instead
        log_config=None,
        log_level=log_level,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_TIMEOUT,
        timeout_keep_alive=5,
    )
