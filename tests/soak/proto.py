"""The soak clients' per-frame readers: MJPEG through the suite's parser, and the WebSocket channel.

MJPEG goes through `tests.support.multipart` (the one MJPEG parser of the tests, the benchmark and
`MjpegStream` alike); `MjpegReader` reports its parts to a client's `FrameSink`. `WsReader` is the
soak's own incremental WebSocket reader, on the same rules: it works on ``(buf, start, end)``
ranges of a receive buffer the caller reuses for the next read, keeps no reference to it, and
never scans JPEG bytes (the frame length says how many to skip, and only a frame's first and last
two bytes are looked at, unless the sink asks for the whole frame to decode it as a sample). That
keeps a frame's cost on the client side to a handful of Python operations, so 200 clients on a
2-core machine do not become the bottleneck of the server they are measuring.

What is checked (§4 and §5 of docs/interface.md) on every frame a client completes:
  MJPEG: see `tests.support.multipart`.  WebSocket: server frames are unmasked and unfragmented;
  a binary message is 8 bytes sequence number (increasing), 8 bytes timestamp, then a JPEG
  starting ``FF D8``, ending ``FF D9``.
A violation is reported to the sink as a corrupt frame (``problem``); a framing violation also
ends the parse (``failed``), since nothing after it can be trusted.

Why these readers and not `MjpegStream` and `RawWebSocket` themselves: those pull from a blocking
socket (a thread per client) and raise at the first fault, which suits a test that checks one
stream. The soak's 200 clients share one asyncio loop that pushes whatever arrived into a reader
(`feed`), must count a corrupt frame and carry on, and must know when they are inside a JPEG
(vanishers leave there). What is not per frame (requests, the handshake, client frames, response
heads) comes from `tests.support`.
"""

from __future__ import annotations

import math
import struct
from typing import Protocol

from tests.support.http import header_fields, request_head, status_code
from tests.support.multipart import HEAD_END, JPEG_EOI, JPEG_SOI, Part
from tests.support.response import MAX_RESPONSE_HEAD, MjpegResponse
from tests.support.websocket import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    accept_for,
    new_key,
    upgrade_headers,
)

MAX_TEXT = 64 * 1024
WS_PREFIX = struct.Struct(">Qd")
USER_AGENT = "edge-soak"


Buf = bytearray | bytes
"""A receive buffer (bytearray, reused by the caller) or bytes."""


class FrameSink(Protocol):
    """What a parser reports to (the client's statistics)."""

    def want_jpeg(self) -> bool:
        """Asked when a frame starts: keep its bytes so they can be decoded?"""

    def on_frame(self, now: float, ts: float, seq: int, size: int, problem: str | None, jpeg: bytes | None) -> None:
        """A frame was completed at wall time ``now``; ``problem`` is None when it is intact."""

    def on_text(self, now: float, payload: bytes) -> None:
        """A WebSocket text message."""

    def on_close(self, code: int | None) -> None:
        """A WebSocket close frame from the server."""


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------


def mjpeg_request(host: str, port: int, path: str = "/stream", http10: bool = False) -> bytes:
    """A browser-like GET; HTTP/1.0 gets a close-delimited body, HTTP/1.1 a chunked one."""
    fields = {"Host": f"{host}:{port}", "User-Agent": USER_AGENT, "Accept": "*/*"}
    return request_head("GET", path, fields, "HTTP/1.0" if http10 else "HTTP/1.1")


def ws_handshake(host: str, port: int, path: str = "/ws") -> tuple[bytes, str]:
    """The upgrade request and the ``Sec-WebSocket-Accept`` value the server must answer."""
    key = new_key()
    fields = {"Host": f"{host}:{port}", **upgrade_headers(key), "User-Agent": USER_AGENT}
    return request_head("GET", path, fields), accept_for(key)


def last_two(before: bytes, buf: Buf, pos: int, stop: int) -> bytes:
    """The last two bytes of a frame so far, once ``buf[pos:stop]`` has arrived after ``before``."""
    if stop - pos >= 2:
        return bytes(buf[stop - 2 : stop])
    return (before + bytes(buf[pos:stop]))[-2:]


# --------------------------------------------------------------------------------------------
# Shared head handling
# --------------------------------------------------------------------------------------------


class _HeadReader:
    """Collects the response head of a WebSocket upgrade, then hands the rest of the bytes to ``_body``."""

    def __init__(self) -> None:
        self._head = bytearray()
        self.head_done = False
        self.status = 0
        self.headers: dict[str, str] = {}
        self.failed: str | None = None

    def _fail(self, reason: str) -> None:
        if self.failed is None:
            self.failed = reason

    def feed(self, buf: Buf, start: int, end: int, now: float) -> None:
        """Consume ``buf[start:end]``, which arrived at wall time ``now``."""
        if self.failed is not None:
            return
        if self.head_done:
            self._body(buf, start, end, now)
            return
        old = len(self._head)
        self._head += buf[start:end]
        idx = self._head.find(HEAD_END, max(0, old - 3))
        if idx < 0:
            if len(self._head) > MAX_RESPONSE_HEAD:
                self._fail("response head too long")
            return
        block = self._head[:idx]
        rest = bytearray(self._head[idx + 4 :])
        self._head = bytearray()
        self.head_done = True
        self.status = status_code(block)
        self.headers = header_fields(block)
        self._on_head()
        if rest and self.failed is None:
            self._body(rest, 0, len(rest), now)

    def _on_head(self) -> None:
        raise NotImplementedError

    def _body(self, buf: Buf, start: int, end: int, now: float) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------------------------
# MJPEG
# --------------------------------------------------------------------------------------------


class MjpegReader:
    """An MJPEG response through `tests.support.response.MjpegResponse`, its parts reported to
    the client's sink; a framing error stops it (``failed``) and counts as a corrupt frame."""

    def __init__(self, sink: FrameSink) -> None:
        self._sink = sink
        self._response = MjpegResponse(self)
        self.feed = self._response.feed  # feed(buf, start, end, now): straight to the parser

    @property
    def failed(self) -> str | None:
        return self._response.failed

    @property
    def ended(self) -> bool:
        return self._response.ended

    @property
    def frames(self) -> int:
        return self._response.frames

    @property
    def mid_jpeg(self) -> bool:
        """Inside a JPEG: some of its bytes have arrived, not all."""
        return self._response.mid_jpeg

    # -- tests.support.multipart.PartSink -----------------------------------------------------

    def want_jpeg(self) -> bool:
        return self._sink.want_jpeg()

    def on_part(self, part: Part) -> None:
        self._sink.on_frame(part.at, part.timestamp, -1, part.length, part.problem, part.jpeg)

    def on_error(self, reason: str) -> None:
        self._sink.on_frame(math.nan, math.nan, -1, 0, reason, None)


# --------------------------------------------------------------------------------------------
# WebSocket
# --------------------------------------------------------------------------------------------


class WsReader(_HeadReader):
    """The 101 answer, then server frames: binary frame messages, text, close."""

    _HDR, _PAYLOAD, _END = range(3)

    def __init__(self, sink: FrameSink, accept: str) -> None:
        super().__init__()
        self._sink = sink
        self._accept = accept
        self.frames = 0
        self.last_seq = -1
        self.close_code: int | None = None
        self._state = self._HDR
        self._carry = bytearray()
        self._opcode = 0
        self._length = 0
        self._offset = 0
        self._prefix = bytearray()
        self._soi = bytearray()
        self._eoi = b""
        self._collect: bytearray | None = None

    @property
    def mid_jpeg(self) -> bool:
        """Inside a binary frame message, past its prefix, before its end."""
        return (
            self._state == self._PAYLOAD and self._opcode == OP_BINARY and WS_PREFIX.size < self._offset < self._length
        )

    @property
    def ended(self) -> bool:
        return self._state == self._END

    def _on_head(self) -> None:
        if self.status != 101:
            self._fail(f"upgrade answered HTTP {self.status}")
        elif self.headers.get("sec-websocket-accept") != self._accept:
            self._fail("bad Sec-WebSocket-Accept")

    def _body(self, buf: Buf, start: int, end: int, now: float) -> None:
        pos = start
        while pos < end and self.failed is None:
            if self._state == self._PAYLOAD:
                pos = self._payload(buf, pos, end, now)
            elif self._state == self._HDR:
                pos = self._header(buf, pos, end, now)
            else:
                return

    def _header(self, buf: Buf, pos: int, end: int, now: float) -> int:
        need = 2
        if len(self._carry) >= 2:
            n7 = self._carry[1] & 0x7F
            need = 2 + (2 if n7 == 126 else 8 if n7 == 127 else 0)
        while len(self._carry) < need and pos < end:
            take = min(end, pos + need - len(self._carry))
            self._carry += buf[pos:take]
            pos = take
            if len(self._carry) == 2:
                n7 = self._carry[1] & 0x7F
                need = 2 + (2 if n7 == 126 else 8 if n7 == 127 else 0)
        if len(self._carry) < need:
            return pos
        b0, b1 = self._carry[0], self._carry[1]
        if b1 & 0x80:
            self._fail("server frame is masked")
            return pos
        n7 = b1 & 0x7F
        length = (
            n7
            if n7 < 126
            else struct.unpack(">H", self._carry[2:4])[0]
            if n7 == 126
            else struct.unpack(">Q", self._carry[2:10])[0]
        )
        self._carry.clear()
        opcode = b0 & 0x0F
        if not b0 & 0x80 or opcode == OP_CONT:
            self._fail(f"fragmented server message (opcode {opcode})")
            return pos
        if opcode not in (OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
            self._fail(f"unknown opcode {opcode}")
            return pos
        if opcode != OP_BINARY and length > MAX_TEXT:
            self._fail(f"{length}-byte control/text message")
            return pos
        self._opcode = opcode
        self._length = length
        self._offset = 0
        self._prefix.clear()
        self._soi.clear()
        self._eoi = b""
        self._collect = None
        if opcode == OP_BINARY:
            if self._sink.want_jpeg():
                self._collect = bytearray()
        else:
            self._collect = bytearray()
        self._state = self._PAYLOAD
        if length == 0:
            self._message_done(now)
        return pos

    def _payload(self, buf: Buf, pos: int, end: int, now: float) -> int:
        stop = pos + min(self._length - self._offset, end - pos)
        if self._opcode == OP_BINARY:
            off = self._offset
            if off < WS_PREFIX.size:
                self._prefix += buf[pos : min(stop, pos + WS_PREFIX.size - off)]
            if off < WS_PREFIX.size + 2 and stop - pos + off > WS_PREFIX.size:
                first = pos + max(0, WS_PREFIX.size - off)
                self._soi += buf[first : min(stop, first + 2 - len(self._soi))]
            self._eoi = last_two(self._eoi, buf, pos, stop)
        if self._collect is not None:
            self._collect += buf[pos:stop]
        self._offset += stop - pos
        if self._offset >= self._length:
            self._message_done(now)
        return stop

    def _message_done(self, now: float) -> None:
        self._state = self._HDR
        opcode = self._opcode
        if opcode == OP_BINARY:
            self._binary_done(now)
        elif opcode == OP_TEXT:
            self._sink.on_text(now, bytes(self._collect or b""))
        elif opcode == OP_CLOSE:
            payload = bytes(self._collect or b"")
            self.close_code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
            self._state = self._END
            self._sink.on_close(self.close_code)
        self._collect = None

    def _binary_done(self, now: float) -> None:
        size = self._length - WS_PREFIX.size
        if size < 4 or len(self._prefix) < WS_PREFIX.size:
            self._sink.on_frame(now, math.nan, -1, max(size, 0), f"binary message of {self._length} bytes", None)
            return
        seq, ts = WS_PREFIX.unpack(self._prefix)
        problem = None
        if bytes(self._soi) != JPEG_SOI or self._eoi != JPEG_EOI:
            problem = "JPEG does not start FFD8 / end FFD9"
        elif seq <= self.last_seq:
            problem = f"sequence number {seq} after {self.last_seq}"
        self.last_seq = max(self.last_seq, seq)
        self.frames += 1
        jpeg = bytes(self._collect[WS_PREFIX.size :]) if self._collect is not None else None
        self._sink.on_frame(now, ts, seq, size, problem, jpeg)
