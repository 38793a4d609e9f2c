"""uvicorn setup and the one adapter to its internals: listening socket, transports, limits,
shutdown and signals.

Everything that reaches below uvicorn's public API lives in this module, and
:func:`check_uvicorn` looks for all of it at start-up, so an upgrade that moves something
fails at once with a message naming it instead of hanging streams or answering 500. It
corrects the uvicorn 0.54 behaviours that matter for endless streams:

* stream bodies go out on the fast path: each connection's transport is handed to the app
  as a :class:`broadcast.Wire` (the ``edge.wire`` scope extension), and the camera's broadcast
  writes each frame's bytes to it directly, while the ASGI cycle keeps doing the rest (head,
  errors, the end of a body, WebSocket handshakes and text messages);
* httptools sends a chunked body even to HTTP/1.0 clients, which cannot parse it: an
  HTTP/1.0 response without a length gets a close-delimited body instead;
* buffers that hide a slow reader from us: see ``broadcast.py`` for the bounded-backlog
  mechanism; this module sets ``TCP_NOTSENT_LOWAT`` and the zero high-water mark, and tells
  the wire when its transport pauses and resumes;
* shutdown waits for open connections (forever by default) before the app hears of
  it, a stalled reader never drains, and a signal is re-raised so the exit status is
  143: streams are ended first, stalled connections are aborted, and a signal-driven
  shutdown returns normally so the process exits 0;
* a hostile client is bounded (§7): httptools buffers a request head of any size and uvicorn
  waits forever for one, so the head's size, its number of headers and the time to send it
  (from the TCP accept, the TLS handshake included: see :meth:`EdgeServer.startup`) are
  limited here, and so is the number of connections one address may hold open without a
  request (:class:`PendingConnections`); each refusal is a JSON answer and one rate-limited
  INFO line;
* a WebSocket client's frames are counted before the websockets library parses them
  (``wsguard.py``): a flood of pings or empty fragments is closed at its 101st frame, and once
  a close has been sent nothing the client sends is parsed and the connection is dropped
  within :data:`WS_CLOSE_DROP` seconds;
* a request pipelined behind a stream made uvicorn forget the stream's cycle, so the stream
  never heard that its client left and wrote into a closed transport (an ERROR traceback).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import ipaddress
import json
import logging
import math
import resource
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from .access import SECURITY_HEADERS
from .broadcast import WIRE_EXTENSION
from .config import ServerConfig
from .connections import address_key
from .logs import client_log
from .wsguard import GUARD_EXTENSION, FrameGuard

log = logging.getLogger("edge.server")

# Unsent bytes below which the kernel reports a connection writable. Measured with the
# throttled benchmark client (16 KB/s): 16 KiB gave frames 3.0 s old at the median, 4 KiB
# 2.3 s, 1 byte 2.5 s; fast clients' rate and CPU did not change measurably.
NOTSENT_LOWAT = 4 * 1024
TLS_WRITE_HIGH_WATER = 4 * 1024
STREAM_STOP_GRACE = 1.0  # seconds streams get to end cleanly before stalled ones are aborted
GRACEFUL_SHUTDOWN_TIMEOUT = 2
REFUSAL_LINGER = 1.0  # seconds a refused client gets to read the answer before the connection closes
WS_CLOSE_DROP = 0.5  # seconds a WebSocket is kept after edge sent its close (§7: dropped within 1 s)
WS_DRAIN_LIMIT = 1 << 20  # bytes read (unparsed) from a closing WebSocket before reading stops
TLS_SHUTDOWN_TIMEOUT = 2.0  # seconds a closing TLS connection waits for the client's close_notify
_UNBOUNDED = 1 << 62


@dataclass(frozen=True)
class Limits:
    """What one connection may cost before it has made a request (§7)."""

    max_request_head: int = 64 * 1024
    max_headers: int = 100
    request_timeout: float = 10.0

    @classmethod
    def of(cls, server: ServerConfig) -> Limits:
        return cls(server.max_request_head, server.max_headers, server.request_timeout)


@dataclass
class PendingConnections:
    """Connections per client address (:func:`~edge.connections.address_key`) that are waiting
    for a request head: just accepted, or kept alive between requests. (A TLS connection counts
    from the end of its handshake: the loop tells nobody who is handshaking; the handshake
    itself is bounded in time by ``request_timeout``.)

    Such a connection costs a descriptor and buffers and does nothing for anyone, so one address
    may hold at most ``cap`` (0: no cap); a trusted proxy's connections are not capped (the
    proxy speaks for many clients and sends a complete head at once).
    """

    cap: int = 0
    trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    counts: collections.Counter[str] = field(default_factory=collections.Counter)

    def admit(self, host: str) -> str | None:
        """Count a new connection from ``host``: its key, or ``None`` if it must be refused."""
        key = address_key(host)
        if self.cap and self.counts[key] >= self.cap and not self._trusted(host):
            return None
        self.counts[key] += 1
        return key

    def waiting(self, key: str) -> None:
        self.counts[key] += 1

    def done(self, key: str) -> None:
        self.counts[key] -= 1
        if self.counts[key] <= 0:
            del self.counts[key]

    def _trusted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)

    @classmethod
    def of(cls, server: ServerConfig) -> PendingConnections:
        trusted = tuple(ipaddress.ip_network(p, strict=False) for p in server.trusted_proxies)
        return cls(server.max_pending_per_address, trusted)


def _peer_host(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"


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


class TransportWire:
    """A connection's transport for the broadcast: a write that pauses, a resume callback."""

    __slots__ = ("write", "abort", "buffered", "_closing", "paused", "paused_at", "paused_left", "on_resume")

    def __init__(self, transport: asyncio.Transport, closing: Callable[[], bool] | None = None) -> None:
        self.write = transport.write
        self.abort = transport.abort
        self.buffered = transport.get_write_buffer_size
        self._closing = closing or transport.is_closing
        self.paused = False
        self.paused_at = 0.0
        self.paused_left = 0
        self.on_resume: Callable[[], None] | None = None

    def closing(self) -> bool:
        return self._closing()

    def pause(self) -> None:
        self.paused = True
        self.paused_at = time.monotonic()
        self.paused_left = self.buffered()

    def resume(self) -> None:
        self.paused = False
        if self.on_resume is not None:
            self.on_resume()


class _TellsTheWire(asyncio.Protocol):
    """Passes the transport's pause and resume on to the connection's :class:`TransportWire`."""

    wire: TransportWire | None = None

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.wire is not None:
            self.wire.pause()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.wire is not None:
            self.wire.resume()


def _stalled(transport: asyncio.Transport) -> bool:
    return transport.get_write_buffer_size() > 0


class EdgeHttpProtocol(_TellsTheWire, HttpToolsProtocol):
    def __init__(
        self, *args: Any, limits: Limits = Limits(), pending: PendingConnections | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.pending = pending if pending is not None else PendingConnections()
        self._in_head = True  # between the first byte of a request and its last header line
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._received_any = False
        self._refused = False
        self._running: RequestResponseCycle | None = None  # the cycle whose ASGI task runs
        self.wire: TransportWire | None = None
        # The loop's server builds the protocol when it accepts the TCP connection, before any
        # TLS handshake: the first request's clock runs from here (§7).
        self.accepted_at = self.loop.time()
        self._pending_key: str | None = None
        self._waiting = False  # counted in `pending`: no request head under way or answered

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.wire = TransportWire(transport)
        _limit_write_buffer(transport)
        key = self.pending.admit(_peer_host(transport))
        if key is None:
            self._refuse(
                503,
                f"more than {self.pending.cap} connections from this address are waiting to send a request "
                "(server.max_pending_per_address); close some and try again",
            )
            return
        self._pending_key, self._waiting = key, True
        self._arm_head_timer(self.accepted_at + self.limits.request_timeout - self.loop.time())

    def _set_waiting(self, waiting: bool) -> None:
        key = self._pending_key
        if key is None or waiting == self._waiting:
            return
        self._waiting = waiting
        if waiting:
            self.pending.waiting(key)
        else:
            self.pending.done(key)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        self._set_waiting(False)
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

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # kept alive, waiting for the next request
            self._set_waiting(True)

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
        self._arm_head_timer(self.limits.request_timeout)  # a keep-alive connection's next request

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= self.limits.max_headers:
            self._refuse(431, f"more than {self.limits.max_headers} request headers")
            raise _Refused
        super().on_header(name, value)

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to a request httptools cannot parse (text/plain, a WARNING line).
        self._refuse(400, "malformed HTTP request")

    def _arm_head_timer(self, delay: float) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(max(delay, 0.0), self._head_timed_out)

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
        client_log.info("%d to %s: %s", status, client, message, extra={"client": address_key(client)})
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
        self._set_waiting(False)
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is None or cycle.scope is not self.scope:  # a WebSocket upgrade
            return
        if self.scope["http_version"] == "1.0":
            # The cycle's task has not run yet, so switching its class is safe.
            cycle.__class__ = _Http10Cycle
        extensions = cast(dict[str, Any], self.scope.setdefault("extensions", {}))
        extensions[WIRE_EXTENSION] = self.wire

    def shutdown(self) -> None:
        if self.cycle is not None and not self.cycle.response_complete and _stalled(self.transport):
            self.transport.abort()  # the client stopped reading; it would never drain
            return
        super().shutdown()


class EdgeWebSocketProtocol(_TellsTheWire, WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frame_guard = FrameGuard()
        self._drained = 0  # bytes read, unparsed, since the close was sent

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # Frames written past the protocol must stop at its close frame, not at the socket's.
        self.wire = TransportWire(self.transport, lambda: self.close_sent or self.transport.is_closing())

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            extensions = cast(dict[str, Any], scope["extensions"])
            extensions[WIRE_EXTENSION] = self.wire
            extensions[GUARD_EXTENSION] = self.frame_guard

    def data_received(self, data: bytes) -> None:
        if self.close_sent:
            self._drain(data)
            return
        if not self.handshake_initiated:
            super().data_received(data)  # the upgrade request, which uvicorn hands over whole
            return
        guard = self.frame_guard
        allowed = guard.feed(data)
        if allowed:
            super().data_received(data if allowed == len(data) else data[:allowed])
        if guard.violation is not None and not self.close_sent and not self.transport.is_closing():
            code, reason = guard.violation
            self._client_fault("closing with %d: %s", code, reason)
            self.conn.fail(code, reason)
            self.handle_parser_exception()

    def _client_fault(self, message: str, *args: Any) -> None:
        client = str(self.client[0]) if self.client else "?"
        client_log.info(message, *args, extra={"client": address_key(client)})

    def handle_parser_exception(self) -> None:
        # uvicorn closes the transport at once: with unread input that is a reset, which can
        # destroy the close frame before the client reads it. Close as after any close instead.
        assert self.conn.close_sent is not None
        code, reason = self.conn.close_sent.code, self.conn.close_sent.reason
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self._after_close()

    def _after_close(self) -> None:
        """Edge has sent its close: nothing the client sends is parsed any more (see
        :meth:`_drain`), and the connection is dropped within :data:`WS_CLOSE_DROP` seconds."""
        if self.transport.is_closing():
            return
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the close frame, then EOF: nothing can get lost after it
        if self.close_timer is not None:
            self.close_timer.cancel()
        self.close_timer = self.loop.call_later(WS_CLOSE_DROP, self.transport.close)
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    def _drain(self, data: bytes) -> None:
        """After the close: frames are counted by their headers only, and the connection is
        closed as soon as the client's close has come. A client that goes on sending is closed
        by the timer instead: closing on it now would reset the connection, and a reset can
        destroy edge's close frame before the client has read it. Beyond
        :data:`WS_DRAIN_LIMIT` bytes nothing more is read at all."""
        self._drained += len(data)
        guard = self.frame_guard
        if guard.violation is None:
            guard.feed(data)
        if guard.close_seen:
            self.transport.close()
        elif self._drained > WS_DRAIN_LIMIT:
            self.transport.pause_reading()

    def send_receive_event_to_app(self) -> None:
        # uvicorn logs a traceback at ERROR for a text message that is not UTF-8; that is the
        # client's fault, so close with 1007 (invalid data) and say so at INFO instead.
        if self.curr_msg_data_type == "text":
            try:
                b"".join(self.frames).decode()
            except UnicodeDecodeError:
                self.frames = []
                self._client_fault("closing with 1007: a text message was not valid UTF-8")
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
        elif message["type"] == "websocket.close" and self.close_sent and self.handshake_complete:
            self._after_close()  # not uvicorn's 10 s wait for the client's answer

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
        limits: Limits = Limits(),
    ) -> None:
        super().__init__(config)
        self._stop_streams = stop_streams
        self._on_started = on_started
        self._limits = limits

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        create_server = loop.create_server

        async def create_tls_server(*args: Any, **kwargs: Any) -> asyncio.Server:
            # uvicorn leaves the loop's TLS handshake timeout (60 s), while §7 wants
            # request_timeout from the TCP accept, the handshake included (the protocol's head
            # timer gets what the handshake left); and a closing TLS connection waits 30 s for
            # the client's close_notify unless told otherwise.
            if kwargs.get("ssl") is not None:
                kwargs.setdefault("ssl_handshake_timeout", self._limits.request_timeout)
                kwargs.setdefault("ssl_shutdown_timeout", TLS_SHUTDOWN_TIMEOUT)
            return await create_server(*args, **kwargs)

        loop.create_server = create_tls_server  # type: ignore[method-assign]
        try:
            await super().startup(sockets)
        finally:
            del loop.create_server  # the loop's own method again
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
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signals it caught once it has shut down, so the exit status
        # would be 128+signal; a requested shutdown that went well exits 0.
        self._captured_signals.clear()


def uvicorn_config(app: Any, server: ServerConfig) -> uvicorn.Config:
    tls = server.tls
    limits, pending = Limits.of(server), PendingConnections.of(server)
    return uvicorn.Config(
        app,
        http=functools.partial(EdgeHttpProtocol, limits=limits, pending=pending),  # type: ignore[arg-type]
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


class AdapterError(Exception):
    """The installed uvicorn lacks something this module relies on."""


# What this module uses below uvicorn's public API, by the object that must have it.
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


def check_uvicorn(app: Any = None) -> None:
    """Fail fast, naming what is missing, if this uvicorn is not the one this module was
    written against (instances are built, so attributes set in ``__init__`` are checked too)."""
    config = uvicorn.Config(app or _probe_app, lifespan="off", log_config=None)
    config.load()
    state = ServerState()
    transport = _ProbeTransport()
    http = HttpToolsProtocol(config, state, {}, _loop=asyncio.new_event_loop())
    try:
        http.connection_made(transport)
        objects: dict[str, object] = {
            "HttpToolsProtocol": http,
            "FlowControl": http.flow,
            "RequestResponseCycle": RequestResponseCycle(
                cast(Any, {}),
                transport,
                http.flow,
                log,
                log,
                False,
                [],
                asyncio.Event(),
                False,
                True,
                lambda: None,
            ),
            "WebSocketsSansIOProtocol": WebSocketsSansIOProtocol(config, state, {}, _loop=http.loop),
            "Server": uvicorn.Server(config),
        }
        objects["ServerProtocol"] = cast(WebSocketsSansIOProtocol, objects["WebSocketsSansIOProtocol"]).conn
    finally:
        http.loop.close()
    _check_objects(objects)


def _check_objects(objects: dict[str, object]) -> None:
    for owner, names in _NEEDED.items():
        for name in names.split():
            if not hasattr(objects[owner], name):
                raise AdapterError(
                    f"uvicorn {uvicorn.__version__}: attribute {owner}.{name} missing; edge's server adapter "
                    f"(edge/server.py) was written for uvicorn 0.54: install the version pinned in pyproject.toml"
                )


async def _probe_app(scope: Any, receive: Any, send: Any) -> None:
    return None
