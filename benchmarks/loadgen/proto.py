"""Incremental parsers for one MJPEG response: HTTP head, chunked coding, multipart body.

Every parser works on ``(buf, start, end)`` ranges of a receive buffer that the caller reuses
for the next read. Nothing here keeps a reference to ``buf``, and the JPEG payload is never
copied or scanned: ``Content-Length`` says how many bytes to skip, and only the first and last
two bytes of each JPEG are looked at (to check ``FF D8`` ... ``FF D9``). That keeps the client's
cost per frame a handful of Python operations, which matters with 500 clients on 2 cores.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from tests.support.http import header_fields, status_code

CRLF = b"\r\n"
HEADER_END = b"\r\n\r\n"
JPEG_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"
MAX_PART_HEADER = 1024
MAX_RESPONSE_HEAD = 16384
MAX_CHUNK_LINE = 1024
# Headers §4 of the contract requires on every MJPEG response.
REQUIRED_HEAD = {
    "cache-control": "no-store, no-cache, must-revalidate, max-age=0",
    "pragma": "no-cache",
    "x-accel-buffering": "no",
}

FrameCallback = Callable[[float, float, bool, float], None]
"""Called once per complete frame with (arrival of the JPEG's last byte, X-Timestamp, JPEG looks
valid, seconds between that last byte and the end of the following boundary)."""
ErrorCallback = Callable[[str], None]
"""Called with a short reason when the byte stream does not follow the framing."""


class BodySink(Protocol):
    """Anything that consumes a range of a receive buffer."""

    def feed(self, buf: bytearray, start: int, end: int, now: float) -> None:
        """Consume ``buf[start:end]``, which arrived at wall-clock time ``now``."""


class MultipartParser:
    """Splits the multipart/x-mixed-replace body into frames.

    States follow the wire format: the opening ``--token CRLF``, then per frame the part
    headers, ``Content-Length`` JPEG bytes, and the delimiter ``CRLF --token CRLF`` that also
    opens the next part. A frame is reported once its closing delimiter has arrived (only then
    is it known to be well framed), with the arrival time of the JPEG's last byte; the wait
    between the two is reported too, because a browser paints only after the boundary (the
    contract puts it *after* each frame for that reason). After a framing error the parser
    scans for the next delimiter, so one broken part costs one frame, not the stream.
    """

    _OPEN, _HEADERS, _DATA, _CLOSE, _RESYNC, _END = range(6)

    def __init__(self, boundary: bytes, on_frame: FrameCallback, on_error: ErrorCallback) -> None:
        self._open = b"--" + boundary + CRLF
        self._delim = CRLF + b"--" + boundary + CRLF
        self._final = CRLF + b"--" + boundary + b"--"
        self._on_frame = on_frame
        self._on_error = on_error
        self._state = self._OPEN
        self._carry = bytearray()
        self._remaining = 0
        self._soi = b""
        self._eoi = b""
        self._ts = math.nan
        self._jpeg_end = math.nan

    @property
    def ended(self) -> bool:
        """True once the closing ``--token--`` delimiter was seen."""
        return self._state == self._END

    def feed(self, buf: bytearray, start: int, end: int, now: float) -> None:
        """Consume ``buf[start:end]``; the hot path is the ``_DATA`` branch, tested first."""
        pos = start
        while pos < end:
            state = self._state
            if state == self._DATA:
                pos = self._data(buf, pos, end, now)
            elif state == self._HEADERS:
                pos = self._headers(buf, pos, end)
            elif state == self._CLOSE:
                pos = self._close(buf, pos, end, now)
            elif state == self._OPEN:
                pos = self._opening(buf, pos, end)
            elif state == self._RESYNC:
                pos = self._resync(buf, pos, end)
            else:
                return

    def _fill(self, buf: bytearray, pos: int, end: int, want: int) -> tuple[int, bool]:
        """Move bytes into the small carry buffer until it holds ``want`` bytes."""
        stop = min(end, pos + want - len(self._carry))
        self._carry += buf[pos:stop]
        return stop, len(self._carry) >= want

    def _fail(self, reason: str) -> None:
        self._on_error(reason)
        self._state = self._RESYNC

    def _opening(self, buf: bytearray, pos: int, end: int) -> int:
        pos, full = self._fill(buf, pos, end, len(self._open))
        if full:
            if self._carry == self._open:
                self._carry.clear()
                self._state = self._HEADERS
            else:
                self._fail("body does not start with --boundary")
        return pos

    def _headers(self, buf: bytearray, pos: int, end: int) -> int:
        limit = min(end, pos + MAX_PART_HEADER - len(self._carry))
        if not self._carry:
            idx = buf.find(HEADER_END, pos, limit)
            if idx >= 0:
                self._start_part(buf[pos:idx])
                return idx + len(HEADER_END)
        old = len(self._carry)
        self._carry += buf[pos:limit]
        idx = self._carry.find(HEADER_END, max(0, old - 3))
        if idx >= 0:
            block = self._carry[:idx]
            self._carry.clear()
            self._start_part(block)
            return pos + idx + len(HEADER_END) - old
        if len(self._carry) >= MAX_PART_HEADER:
            self._carry.clear()
            self._fail("part headers too long")
        return limit

    def _start_part(self, block: bytes | bytearray) -> None:
        length = -1
        self._ts = math.nan
        for line in block.split(CRLF):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            try:
                if name == b"content-length":
                    length = int(value)
                elif name == b"x-timestamp":
                    self._ts = float(value)
            except ValueError:
                self._fail(f"unparsable part header {bytes(name)!r}")
                return
        if length < 0:
            self._fail("part without Content-Length")
            return
        if math.isnan(self._ts):
            self._on_error("part without X-Timestamp")
        self._remaining = length
        self._soi = b""
        self._eoi = b""
        self._jpeg_end = math.nan
        self._state = self._DATA if length else self._CLOSE

    def _data(self, buf: bytearray, pos: int, end: int, now: float) -> int:
        stop = pos + min(self._remaining, end - pos)
        if len(self._soi) < 2:
            self._soi += buf[pos : min(stop, pos + 2 - len(self._soi))]
        if stop - pos >= 2:
            self._eoi = buf[stop - 2 : stop]
        else:
            self._eoi = (self._eoi + buf[pos:stop])[-2:]
        self._remaining -= stop - pos
        if not self._remaining:
            self._jpeg_end = now
            self._state = self._CLOSE
        return stop

    def _close(self, buf: bytearray, pos: int, end: int, now: float) -> int:
        pos, full = self._fill(buf, pos, end, len(self._delim))
        if not full:
            return pos
        if self._carry == self._delim:
            self._state = self._HEADERS
        elif self._carry == self._final:
            self._state = self._END
        else:
            self._fail("no boundary right after Content-Length bytes")
            return pos
        self._carry.clear()
        jpeg_end = now if math.isnan(self._jpeg_end) else self._jpeg_end
        self._on_frame(jpeg_end, self._ts, self._soi == JPEG_SOI and self._eoi == JPEG_EOI, now - jpeg_end)
        return pos

    def _resync(self, buf: bytearray, pos: int, end: int) -> int:
        """Rare path: scan for the next delimiter (this does look at JPEG bytes)."""
        old = len(self._carry)
        window = self._carry + buf[pos:end]
        idx = window.find(self._delim)
        if idx >= 0:
            self._carry.clear()
            self._state = self._HEADERS
            return pos + max(0, idx + len(self._delim) - old)
        self._carry = window[-(len(self._delim) - 1) :]
        return end


class ChunkedDecoder:
    """Removes HTTP/1.1 chunked transfer coding and passes chunk data on without copying.

    Chunk payloads are forwarded as index ranges of the same buffer; only the short size lines
    are copied. Trailers after the last chunk are ignored.
    """

    _SIZE, _DATA, _CRLF, _END = range(4)

    def __init__(self, sink: BodySink, on_error: ErrorCallback) -> None:
        self._sink = sink
        self._on_error = on_error
        self._state = self._SIZE
        self._carry = bytearray()
        self._remaining = 0

    @property
    def ended(self) -> bool:
        """True after the last (zero-size) chunk or a coding error."""
        return self._state == self._END

    def feed(self, buf: bytearray, start: int, end: int, now: float) -> None:
        """Consume ``buf[start:end]``, forwarding chunk payload ranges to the sink."""
        pos = start
        while pos < end:
            state = self._state
            if state == self._DATA:
                stop = pos + min(self._remaining, end - pos)
                self._sink.feed(buf, pos, stop, now)
                self._remaining -= stop - pos
                pos = stop
                if not self._remaining:
                    self._state = self._CRLF
            elif state == self._SIZE:
                pos = self._size_line(buf, pos, end)
            elif state == self._CRLF:
                pos = self._chunk_end(buf, pos, end)
            else:
                return

    def _error(self, reason: str) -> None:
        self._on_error(reason)
        self._state = self._END

    def _size_line(self, buf: bytearray, pos: int, end: int) -> int:
        idx = buf.find(b"\n", pos, end)
        if idx < 0:
            self._carry += buf[pos:end]
            if len(self._carry) > MAX_CHUNK_LINE:
                self._error("chunk size line too long")
            return end
        line = self._carry + buf[pos:idx]
        self._carry.clear()
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            self._error("bad chunk size line")
            return end
        if size == 0:
            self._state = self._END
        else:
            self._remaining = size
            self._state = self._DATA
        return idx + 1

    def _chunk_end(self, buf: bytearray, pos: int, end: int) -> int:
        stop = min(end, pos + 2 - len(self._carry))
        self._carry += buf[pos:stop]
        if len(self._carry) == 2:
            if self._carry != CRLF:
                self._error("chunk not followed by CRLF")
                return end
            self._carry.clear()
            self._state = self._SIZE
        return stop


@dataclass
class ResponseHead:
    """What the client needs from the MJPEG response head (header names lower-cased)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def chunked(self) -> bool:
        """True when the body uses chunked transfer coding."""
        return "chunked" in self.headers.get("transfer-encoding", "").lower()

    @property
    def boundary(self) -> bytes | None:
        """The multipart boundary token, or None if the Content-Type is not multipart."""
        ctype = self.headers.get("content-type", "")
        if not ctype.lower().startswith("multipart/x-mixed-replace"):
            return None
        for param in ctype.split(";")[1:]:
            key, _, value = param.strip().partition("=")
            if key.lower() == "boundary" and value:
                return value.strip('"').encode("latin-1")
        return None

    def contract_problems(self) -> list[str]:
        """Differences from the head required by contract §4 (reported, not fatal)."""
        problems = []
        for name, want in REQUIRED_HEAD.items():
            got = self.headers.get(name)
            if got is None or got.replace(" ", "") != want.replace(" ", ""):
                problems.append(f"{name}: {got!r}")
        ctype = self.headers.get("content-type", "")
        if 'boundary="' in ctype or "boundary=--" in ctype:
            problems.append(f"content-type boundary quoted or prefixed: {ctype!r}")
        return problems


def parse_head(block: bytes | bytearray) -> ResponseHead:
    """A status line and header block (without the blank line), leniently: a benchmark records a
    broken answer as a failed client instead of stopping."""
    return ResponseHead(status_code(block), header_fields(block))


def build_request(path: str, host: str, port: int, http_version: str) -> bytes:
    """The GET request a browser-like client sends (no keep-alive games, no extra headers)."""
    return (
        f"GET {path} HTTP/{http_version}\r\nHost: {host}:{port}\r\nUser-Agent: edge-bench/1\r\nAccept: */*\r\n\r\n"
    ).encode("ascii")
