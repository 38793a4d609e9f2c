"""edge's HTTP protocol: uvicorn's httptools protocol with the limits of §7 of
``docs/interface.md`` and the fixes that endless streams need.

* the request head is bounded: its size is counted before httptools buffers it, its header
  lines are counted as they are parsed, and it has ``request_timeout`` from the TCP accept
  (``EdgeServer.startup`` gives a TLS handshake the same deadline); a connection waiting for a
  head counts toward its address's :class:`~edge.server.limits.PendingConnections`; every
  refusal is a JSON answer, a half-close and one rate-limited INFO line;
* httptools sends a chunked body even to HTTP/1.0 clients, which cannot parse it: an HTTP/1.0
  response without a length gets a close-delimited body instead (:class:`_Http10Cycle`);
* the connection's transport goes to the app as the ``edge.wire`` scope extension, framing
  frames as the response's body needs (a chunk, or nothing for a close-delimited body);
* a request pipelined behind a stream made uvicorn forget the stream's cycle, so the stream
  never heard that its client left and wrote into a closed transport (an ERROR traceback).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

from ..fanout.connections import address_key
from ..fanout.wire import WIRE_EXTENSION
from ..logs import client_log
from .limits import DEFAULT_LIMITS, Limits, PendingConnections, peer_host
from .wire import TellsTheWire, TransportWire, chunked, close_delimited, limit_write_buffer, stalled

REFUSAL_LINGER = 1.0  # seconds a refused client gets to read the answer before the connection closes
_UNBOUNDED = 1 << 62


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request that has been answered."""


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


class EdgeHttpProtocol(TellsTheWire, HttpToolsProtocol):
    def __init__(
        self, *args: Any, limits: Limits = DEFAULT_LIMITS, pending: PendingConnections | None = None, **kwargs: Any
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
        self.wire = TransportWire(transport, chunked)
        limit_write_buffer(transport)
        key = self.pending.admit(peer_host(transport))
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
        assert self.wire is not None
        if self.scope["http_version"] == "1.0":
            # The cycle's task has not run yet, so switching its class is safe.
            cycle.__class__ = _Http10Cycle
            self.wire.framing = close_delimited
        else:
            self.wire.framing = chunked
        extensions = cast(dict[str, Any], self.scope.setdefault("extensions", {}))
        extensions[WIRE_EXTENSION] = self.wire

    def shutdown(self) -> None:
        if self.cycle is not None and not self.cycle.response_complete and stalled(self.transport):
            self.transport.abort()  # the client stopped reading; it would never drain
            return
        super().shutdown()
