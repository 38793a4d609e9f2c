"""A connection's transport as the broadcast writes to it (``edge.fanout.wire.Wire``), and the
transport framing of a frame's payload: an HTTP/1.1 chunk, a close-delimited HTTP/1.0 body, a
WebSocket binary frame. These bytes go out past uvicorn and the websockets library, which
frame everything else on the same connection; this module is where that knowledge lives."""

from __future__ import annotations

import asyncio
import functools
import struct
import time
from collections.abc import Callable

from ..fanout.slot import Frame, Framing, Payload

TLS_WRITE_HIGH_WATER = 4 * 1024
_WS_BINARY = 0x82  # FIN + opcode 2


@functools.cache
def chunked(payload: Payload) -> Framing:
    """``payload`` as one HTTP/1.1 chunk (RFC 9112 §7.1), the same function for every connection."""

    def framing(frame: Frame) -> tuple[bytes, int]:
        data = payload(frame)
        return b"%x\r\n%b\r\n" % (len(data), data), len(data)

    return framing


@functools.cache
def close_delimited(payload: Payload) -> Framing:
    """``payload`` as it is: the body of an HTTP/1.0 response ends when the connection closes."""

    def framing(frame: Frame) -> tuple[bytes, int]:
        data = payload(frame)
        return data, len(data)

    return framing


@functools.cache
def ws_binary(payload: Payload) -> Framing:
    """``payload`` as one unmasked server-to-client binary message (RFC 6455 §5.2)."""

    def framing(frame: Frame) -> tuple[bytes, int]:
        data = payload(frame)
        size = len(data)
        if size < 126:
            header = bytes((_WS_BINARY, size))
        elif size < 1 << 16:
            header = struct.pack(">BBH", _WS_BINARY, 126, size)
        else:
            header = struct.pack(">BBQ", _WS_BINARY, 127, size)
        return header + data, size

    return framing


def limit_write_buffer(transport: asyncio.Transport) -> None:
    if transport.get_extra_info("sslcontext") is None:
        # Zero high-water mark: writing pauses as soon as the kernel refuses a byte.
        transport.set_write_buffer_limits(high=0)
    else:
        # uvloop's TLS transport stops flushing with a zero mark (a response never leaves);
        # a small one keeps the backlog under one frame.
        transport.set_write_buffer_limits(high=TLS_WRITE_HIGH_WATER)


class TransportWire:
    """A connection's transport for the broadcast: a write that pauses, a resume callback, and
    the framing of this connection's body (set by the protocol once it knows it)."""

    __slots__ = (
        "write",
        "abort",
        "buffered",
        "_closing",
        "paused",
        "paused_at",
        "paused_left",
        "on_resume",
        "framing",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        framing: Callable[[Payload], Framing],
        closing: Callable[[], bool] | None = None,
    ) -> None:
        self.write = transport.write
        self.abort = transport.abort
        self.buffered = transport.get_write_buffer_size
        self._closing = closing or transport.is_closing
        self.paused = False
        self.paused_at = 0.0
        self.paused_left = 0
        self.on_resume: Callable[[], None] | None = None
        self.framing = framing

    def frame(self, payload: Payload) -> Framing:
        return self.framing(payload)

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


class TellsTheWire(asyncio.Protocol):
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


def stalled(transport: asyncio.Transport) -> bool:
    """The client stopped reading: what was written to it is still in the transport."""
    return transport.get_write_buffer_size() > 0
