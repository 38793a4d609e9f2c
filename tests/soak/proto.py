"""Incremental, zero-copy parsers for the soak clients: MJPEG over HTTP and the WebSocket channel.

Every parser works on ``(buf, start, end)`` ranges of a receive buffer the caller reuses for the
next read, keeps no reference to it, and never scans JPEG bytes: ``Content-Length`` (MJPEG) or
the frame length (WebSocket) says how many bytes to skip, and only a frame's first and last two
bytes are looked at, unless the sink asks for the whole frame to decode it as a sample.  That keeps
a frame's cost on the client side to a handful of Python operations, so 200 clients on a 2-core
machine do not become the bottleneck of the server they are measuring.

What the parsers check (CONTRACT §4, §5) on every frame a client completes:
  MJPEG: the part has ``Content-Type: image/jpeg``, ``Content-Length`` and ``X-Timestamp``; exactly
  ``Content-Length`` bytes later comes ``CRLF --boundary CRLF``; the bytes start ``FF D8`` and end
  ``FF D9``.  WebSocket: server frames are unmasked and unfragmented; a binary message is 8 bytes
  sequence number (increasing), 8 bytes timestamp, then a JPEG starting ``FF D8``, ending ``FF D9``.
A violation is reported to the sink as a corrupt frame (``problem``); a framing violation also
ends the parse (``failed``), since nothing after it can be trusted.

Why these readers and not `tests.support`'s `MjpegStream` and `RawWebSocket`: those pull from a
blocking socket (a thread per client) and raise at the first fault, which suits a test that checks
one stream. The soak's 200 clients share one asyncio loop that pushes whatever arrived into a
parser (`feed`), must count a corrupt frame and carry on, and must know when they are inside a
JPEG (vanishers leave there). Copying is not the reason: a 14 KB frame takes about 6 us to parse
either way over HTTP/1.0, and 12 us here against 15 us through `BodyReader` when chunked. What is
not per frame (requests, the handshake, client frames, response heads) comes from `tests.support`.
"""

from __future__ import annotations

import math
import struct
from typing import Protocol

from tests.support.http import header_fields, request_head, status_code
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

CRLF = b"\r\n"
HEAD_END = b"\r\n\r\n"
JPEG_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"
MAX_RESPONSE_HEAD = 16 * 1024
MAX_PART_HEAD = 1024
MAX_CHUNK_LINE = 64
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
    """Collects a response head, then hands the rest of the bytes to ``_body``."""

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


class MjpegReader(_HeadReader):
    """HTTP response head, optional chunked coding, and the multipart body, in one pass."""

    # multipart states
    _OPEN, _PART_HEAD, _DATA, _DELIM, _END = range(5)
    # chunked states
    _C_SIZE, _C_DATA, _C_CRLF, _C_END = range(4)

    def __init__(self, sink: FrameSink) -> None:
        super().__init__()
        self._sink = sink
        self.chunked = False
        self.frames = 0
        self._open = b""
        self._delim = b""
        self._final = b""
        self._state = self._OPEN
        self._carry = bytearray()
        self._length = 0
        self._remaining = 0
        self._ts = math.nan
        self._soi = b""
        self._eoi = b""
        self._capture: bytearray | None = None
        self._c_state = self._C_SIZE
        self._c_carry = bytearray()
        self._c_remaining = 0

    @property
    def mid_jpeg(self) -> bool:
        """Inside a JPEG: some of its bytes have arrived, not all."""
        return self._state == self._DATA and 0 < self._remaining < self._length

    @property
    def ended(self) -> bool:
        return self._state == self._END or self._c_state == self._C_END

    def _on_head(self) -> None:
        if self.status != 200:
            self._fail(f"HTTP {self.status}")
            return
        ctype = self.headers.get("content-type", "")
        boundary = ""
        if ctype.lower().startswith("multipart/x-mixed-replace"):
            for param in ctype.split(";")[1:]:
                key, _, value = param.strip().partition("=")
                if key.lower() == "boundary":
                    boundary = value.strip('"')
        if not boundary:
            self._fail(f"not a multipart stream: {ctype!r}")
            return
        token = boundary.encode("latin-1")
        self._open = b"--" + token + CRLF
        self._delim = CRLF + b"--" + token + CRLF
        self._final = CRLF + b"--" + token + b"--"
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()

    def _body(self, buf: Buf, start: int, end: int, now: float) -> None:
        if self.chunked:
            self._dechunk(buf, start, end, now)
        else:
            self._multipart(buf, start, end, now)

    # -- chunked transfer coding: forwards payload ranges of the same buffer ---------------------

    def _dechunk(self, buf: Buf, start: int, end: int, now: float) -> None:
        pos = start
        while pos < end and self.failed is None:
            state = self._c_state
            if state == self._C_DATA:
                stop = pos + min(self._c_remaining, end - pos)
                self._multipart(buf, pos, stop, now)
                self._c_remaining -= stop - pos
                pos = stop
                if not self._c_remaining:
                    self._c_state = self._C_CRLF
            elif state == self._C_SIZE:
                idx = buf.find(b"\n", pos, end)
                if idx < 0:
                    self._c_carry += buf[pos:end]
                    if len(self._c_carry) > MAX_CHUNK_LINE:
                        self._fail("chunk size line too long")
                    return
                line = self._c_carry + buf[pos:idx]
                self._c_carry.clear()
                pos = idx + 1
                try:
                    size = int(bytes(line).split(b";", 1)[0].strip(), 16)
                except ValueError:
                    self._fail(f"bad chunk size line {bytes(line)[:40]!r}")
                    return
                if size == 0:
                    self._c_state = self._C_END
                    return
                self._c_remaining = size
                self._c_state = self._C_DATA
            elif state == self._C_CRLF:
                stop = min(end, pos + 2 - len(self._c_carry))
                self._c_carry += buf[pos:stop]
                pos = stop
                if len(self._c_carry) == 2:
                    if self._c_carry != CRLF:
                        self._fail("chunk not followed by CRLF")
                        return
                    self._c_carry.clear()
                    self._c_state = self._C_SIZE
            else:
                return

    # -- multipart/x-mixed-replace ----------------------------------------------------------------

    def _multipart(self, buf: Buf, start: int, end: int, now: float) -> None:
        pos = start
        while pos < end and self.failed is None:
            state = self._state
            if state == self._DATA:  # the hot path: skip JPEG bytes, note the first and last two
                stop = pos + min(self._remaining, end - pos)
                if len(self._soi) < 2:
                    self._soi += buf[pos : min(stop, pos + 2 - len(self._soi))]
                self._eoi = last_two(self._eoi, buf, pos, stop)
                if self._capture is not None:
                    self._capture += buf[pos:stop]
                self._remaining -= stop - pos
                pos = stop
                if not self._remaining:
                    self._state = self._DELIM
            elif state == self._PART_HEAD:
                pos = self._part_head(buf, pos, end)
            elif state == self._DELIM:
                pos = self._delimiter(buf, pos, end, now)
            elif state == self._OPEN:
                stop = min(end, pos + len(self._open) - len(self._carry))
                self._carry += buf[pos:stop]
                pos = stop
                if len(self._carry) == len(self._open):
                    if self._carry != self._open:
                        self._fail(f"body does not start with the boundary: {bytes(self._carry)!r}")
                        return
                    self._carry.clear()
                    self._state = self._PART_HEAD
            else:
                return

    def _part_head(self, buf: Buf, pos: int, end: int) -> int:
        limit = min(end, pos + MAX_PART_HEAD - len(self._carry))
        old = len(self._carry)
        self._carry += buf[pos:limit]
        idx = self._carry.find(HEAD_END, max(0, old - 3))
        if idx < 0:
            if len(self._carry) >= MAX_PART_HEAD:
                self._corrupt("part headers longer than 1 KiB", fatal=True)
            return limit
        block = bytes(self._carry[:idx])
        self._carry.clear()
        self._start_part(block)
        return pos + idx + 4 - old

    def _start_part(self, block: bytes) -> None:
        fields = {}
        for line in block.split(CRLF):
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        try:
            length = int(fields[b"content-length"])
            ts = float(fields[b"x-timestamp"])
        except (KeyError, ValueError):
            self._corrupt(f"bad part headers {block[:120]!r}", fatal=True)
            return
        if fields.get(b"content-type") != b"image/jpeg" or length <= 0:
            self._corrupt(f"bad part headers {block[:120]!r}", fatal=True)
            return
        self._length = self._remaining = length
        self._ts = ts
        self._soi = b""
        self._eoi = b""
        self._capture = bytearray() if self._sink.want_jpeg() else None
        self._state = self._DATA

    def _delimiter(self, buf: Buf, pos: int, end: int, now: float) -> int:
        stop = min(end, pos + len(self._delim) - len(self._carry))
        self._carry += buf[pos:stop]
        if len(self._carry) < len(self._delim):
            return stop
        carry = bytes(self._carry)
        self._carry.clear()
        if carry == self._final:
            self._state = self._END
        elif carry != self._delim:
            self._corrupt(f"Content-Length {self._length} not followed by the boundary (got {carry!r})", fatal=True)
            return stop
        else:
            self._state = self._PART_HEAD
        self.frames += 1
        problem = None if self._soi == JPEG_SOI and self._eoi == JPEG_EOI else "JPEG does not start FFD8 / end FFD9"
        jpeg = bytes(self._capture) if self._capture is not None else None
        self._capture = None
        self._sink.on_frame(now, self._ts, -1, self._length, problem, jpeg)
        return stop

    def _corrupt(self, reason: str, fatal: bool) -> None:
        self._sink.on_frame(math.nan, self._ts, -1, self._length, reason, None)
        if fatal:
            self._fail(reason)


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
