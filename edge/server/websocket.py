"""edge's WebSocket protocol: uvicorn's websockets (sans-I/O) protocol, guarded (§5, §7 of
``docs/interface.md``).

* the client's frames are counted from their headers before the websockets library parses
  them (``wsguard.py``): a flood of any kind of frame, or a message over 64 KiB however it is
  fragmented, is closed (1008, 1009) at the frame that broke the rule, and what follows it is
  never parsed; the handler credits back one ack per frame sent through the guard it finds in
  the scope (``edge.web.websocket.FRAMES_EXTENSION``);
* after edge sent its close, nothing the client sends is parsed and the connection is dropped
  within :data:`WS_CLOSE_DROP` seconds (uvicorn keeps reading and waits 10 s);
* a text message that is not UTF-8 is closed with 1007 and one INFO line, not a traceback;
* the connection's transport goes to the app as the ``edge.wire`` scope extension, framing
  frames as binary messages; frames written past the protocol stop at its close frame.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from ..fanout.connections import address_key
from ..fanout.wire import WIRE_EXTENSION
from ..logs import client_log
from ..web.websocket import FRAMES_EXTENSION
from .wire import TellsTheWire, TransportWire, stalled, ws_binary
from .wsguard import FrameGuard

WS_CLOSE_DROP = 0.5  # seconds a WebSocket is kept after edge sent its close (§7: dropped within 1 s)
WS_DRAIN_LIMIT = 1 << 20  # bytes read (unparsed) from a closing WebSocket before reading stops


class EdgeWebSocketProtocol(TellsTheWire, WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frame_guard = FrameGuard()
        self._drained = 0  # bytes read, unparsed, since the close was sent

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # Frames written past the protocol must stop at its close frame, not at the socket's.
        self.wire = TransportWire(self.transport, ws_binary, lambda: self.close_sent or self.transport.is_closing())

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            extensions = cast(dict[str, Any], scope["extensions"])
            extensions[WIRE_EXTENSION] = self.wire
            extensions[FRAMES_EXTENSION] = self.frame_guard

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
        if stalled(self.transport):
            self.transport.abort()
            return
        super().shutdown()
