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
  shutdown returns normally so the process exits 0;
* a hostile client is bounded (contract §7): httptools buffers a request head of any size and
  uvicorn waits forever for one, so the head's size, its number of headers and the time to
  send it are limited here, each refusal is a JSON answer and one rate-limited INFO line;
* a request pipelined behind a stream made uvicorn forget the stream's cycle, so the stream
  never heard that its client left and wrote into a closed transport (an ERROR traceback).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import resource
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from .access import SECURITY_HEADERS
from .config import ServerConfig
from .logs import client_log
from .pump import FLOW_EXTENSION, Flow

log = logging.getLogger("edge.server")

# Unsent bytes below which the kernel reports a connection writable. Measured with the
# throttled benchmark client (16 KB/s): 16 KiB gave frames 3.0 s old at the median, 4 KiB
# 2.3 s, 1 byte 2.5 s; fast clients' rate and CPU did not change measurably.
NOTSENT_LOWAT = 4 * 1024
TLS_WRITE_HIGH_WATER = 4 * 1024
STREAM_STOP_GRACE = 1.0  # seconds streams get to end cleanly before stalled ones are aborted
GRACEFUL_SHUTDOWN_TIMEOUT = 2
REFUSAL_LINGER = 1.0  # seconds a refused client gets to read the answer before the connection closes
_UNBOUNDED = 1 << 62


@dataclass(frozen=True)
class Limits:
    """What one connection may cost before it has made a request (contract §7)."""

    max_request_head: int = 64 * 1024
    max_headers: int = 100
    request_timeout: float = 10.0

    @classmethod
    def of(cls, server: ServerConfig) -> Limits:
        return cls(server.max_request_head, server.max_headers, server.request_timeout)


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request that has been answered."""


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


def raise_open_files_limit() -> int:
    """Raise the soft open-files limit to the hard one and return it: every viewer and every
    idle or half-open socket holds a descriptor, and the usual soft limit of 1024 is what a
    thousand idle connections exhaust (then new clients are refused without a word)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open files limit from %d to %d: %s", soft, target, exc)
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


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


def _limit_write_buffer(transport: asyncio.Transport) -> None:
    if transport.get_extra_info("sslcontext") is None:
        # Zero high-water mark: writing pauses as soon as the kernel refuses a byte.
        transport.set_write_buffer_limits(high=0)
    else:
        # uvloop's TLS transport stops flushing with a zero mark (a response never leaves);
        # a small one keeps the backlog under one frame.
        transport.set_write_buffer_limits(high=TLS_WRITE_HIGH_WATER)


def _stalled(transport: asyncio.Transport) -> bool:
    return transport.get_write_buffer_size() > 0


class EdgeHttpProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, limits: Limits = Limits(), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._in_head = True  # between the first byte of a request and its last header line
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._received_any = False
        self._refused = False
        self._running: RequestResponseCycle | None = None  # the cycle whose ASGI task runs

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _limit_write_buffer(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        # uvicorn tells only the newest cycle; a stream with a request pipelined behind it
        # would never learn that its client left.
        for cycle in (self._running, *(queued for queued, _ in self.pipeline)):
            if cycle is not None and cycle is not self.cycle:
                if not cycle.response_complete:
                    cycle.disconnected = True
                cycle.message_event.set()
        super().connection_lost(exc)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        self._running = cycle
        super()._start_asgi_task(cycle, app)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # answered already; what the client still sends is dropped unread
        self._received_any = True
        if self._in_head:
            # Counted before parsing: httptools would buffer a header line of any length.
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_request_head:
                self._refuse(431, f"request head larger than {self.limits.max_request_head} bytes")
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._arm_head_timer()  # a keep-alive connection's next request: the clock starts now

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= self.limits.max_headers:
            self._refuse(431, f"more than {self.limits.max_headers} request headers")
            raise _Refused
        super().on_header(name, value)

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to a request httptools cannot parse (text/plain, a WARNING line).
        self._refuse(400, "malformed HTTP request")

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.request_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._received_any:
            self.transport.close()  # an idle connection: there is no one to answer
            return
        self._refuse(408, f"request head not complete within {self.limits.request_timeout:g} s")

    def _refuse(self, status: int, message: str) -> None:
        """Answer a bad request with a JSON error and close, without reading the rest."""
        if self._refused:
            return
        self._refused = True
        self._disarm_head_timer()
        client = self.client[0] if self.client else "?"
        client_log.info("%d to %s: %s", status, client, message)
        transport = self.transport
        if transport.is_closing():
            return
        running = self._running
        if running is not None and running.response_started and not running.response_complete:
            transport.close()  # a response (a stream) is under way: no room for another one
            return
        body = json.dumps({"error": message}).encode()
        head = [STATUS_LINE[status]]
        for name, value in [*self.server_state.default_headers, (b"content-type", b"application/json")]:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        transport.write(b"".join(head) + body)
        # Closing with unread input resets the connection and can destroy the answer before
        # the client reads it: half-close, drop what still arrives, close after a moment.
        if transport.can_write_eof():
            transport.write_eof()
            self.loop.call_later(REFUSAL_LINGER, transport.close)
        else:
            transport.close()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._disarm_head_timer()
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is None or cycle.scope is not self.scope:  # a WebSocket upgrade
            return
        if self.scope["http_version"] == "1.0":
            # The cycle's task has not run yet, so switching its class is safe.
            cycle.__class__ = _Http10Cycle
        flow, transport = self.flow, self.transport
        extensions = cast(dict[str, Any], self.scope.setdefault("extensions", {}))
        extensions[FLOW_EXTENSION] = Flow(
            flow.drain, transport.abort, lambda: not flow.write_paused, transport.get_write_buffer_size
        )

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
            writable, transport = self.writable, self.transport
            extensions = cast(dict[str, Any], scope["extensions"])
            extensions[FLOW_EXTENSION] = Flow(
                writable.wait, transport.abort, writable.is_set, transport.get_write_buffer_size
            )

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
        try:
            await super().send(message)
        except RuntimeError:
            # The protocol itself closed the connection (1007 for bad UTF-8, 1009 for an
            # oversized message) while the app's frame waited: for the app the client is gone.
            if self.close_sent and message["type"] in ("websocket.send", "websocket.close"):
                raise ClientDisconnected from None
            raise
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


def uvicorn_config(app: Any, server: ServerConfig) -> uvicorn.Config:
    tls = server.tls
    return uvicorn.Config(
        app,
        http=functools.partial(EdgeHttpProtocol, limits=Limits.of(server)),  # type: ignore[arg-type]
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
        log_level=server.log_level,
        server_header=False,
        headers=SECURITY_HEADERS,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_TIMEOUT,
        timeout_keep_alive=math.ceil(server.keepalive_timeout),
        # X-Forwarded-For/-Proto only from the proxies the user named; uvicorn's default trusts
        # 127.0.0.1, which lets any local process (or a port-forward) claim another address.
        proxy_headers=bool(server.trusted_proxies),
        forwarded_allow_ips=list(server.trusted_proxies),
        ssl_certfile=tls.certfile if tls else None,
        ssl_keyfile=tls.keyfile if tls else None,
    )
