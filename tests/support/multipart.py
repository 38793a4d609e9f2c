"""The tests' one parser of the MJPEG edge serves (§4 of docs/interface.md): the response head,
chunked transfer coding, and the multipart body, incrementally.

Every client the suite runs reads MJPEG through it: `tests.support.mjpeg.MjpegStream` (one viewer
on a blocking socket, strict about every byte), the soak's 200 clients on one asyncio loop
(`tests.soak.proto`) and the load benchmark's clients (`benchmarks/loadgen`), up to 500 streams
from one process. So it must stay cheap:

* it works on ``(buf, start, end)`` ranges of a receive buffer the caller reuses for the next
  read, and keeps no reference to it (the soak and the benchmark let the event loop read every
  connection into one shared buffer);
* JPEG bytes are never scanned or copied: ``Content-Length`` says how many to skip, and only the
  first and the last two are looked at (``FF D8`` ... ``FF D9``), unless the sink asks for the
  whole frame (`PartSink.want_jpeg`, asked as each part starts) to decode or compare it;
* chunk payloads are passed on as ranges of the same buffer; only the short lines (chunk sizes,
  part headers, delimiters) are copied, into a small carry buffer.

It is deliberately not edge's own parser (``edge/formats/multipart.py``, which must cope with
every camera's dialect): tests must not check edge with edge's code. This one expects exactly
what §4 lays down, a part as ``Content-Type: image/jpeg``, ``Content-Length``, ``X-Timestamp``,
the JPEG, then ``CRLF --boundary CRLF``, and reports anything else:

* a part whose headers or JPEG are wrong (but whose length is known) is still a `Part`, with
  ``problem`` saying what is wrong: the stream goes on;
* a framing error (the body does not open with the boundary, a part without ``Content-Length``,
  no delimiter right after the JPEG, an overlong part head, broken chunk coding) goes to
  `PartSink.on_error`; then the parser stops (``failed``) or, with ``resync=True`` (the
  benchmark, which counts errors rather than stopping), looks for the next delimiter. Broken
  chunk coding always stops it: nothing after it can be trusted.
"""

from __future__ import annotations

import math
import re
from typing import Protocol

CRLF = b"\r\n"
HEAD_END = b"\r\n\r\n"
JPEG_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"
MAX_PART_HEAD = 1024
# A part's headers exactly as §4 writes them (any other layout takes the slow path).
_EXACT_HEAD = re.compile(rb"Content-Type: image/jpeg\r\nContent-Length: (\d+)\r\nX-Timestamp: (\d+\.\d+)")

Buf = bytes | bytearray
"""A receive buffer (a bytearray the caller reuses) or bytes."""


class Part:
    """One complete part, reported once the delimiter after it has arrived (only then is it
    known to be framed right)."""

    __slots__ = ("at", "head", "jpeg", "jpeg_end", "jpeg_ok", "last", "length", "problem", "timestamp")

    def __init__(
        self,
        head: bytes,
        length: int,
        timestamp: float,
        jpeg_ok: bool,
        jpeg_end: float,
        at: float,
        jpeg: bytes | None,
        problem: str | None,
        last: bool,
    ) -> None:
        self.head = head  # the part's header lines, without the empty line
        self.length = length  # Content-Length: the JPEG's size
        self.timestamp = timestamp  # X-Timestamp, NaN when missing or not a number
        self.jpeg_ok = jpeg_ok  # the bytes start FF D8 and end FF D9
        self.jpeg_end = jpeg_end  # `now` of the feed that brought the JPEG's last byte
        self.at = at  # `now` of the feed that completed the delimiter after it
        self.jpeg = jpeg  # the JPEG, when the sink asked for it
        self.problem = problem  # None when the part is as §4 requires
        self.last = last  # closed by the final delimiter (--boundary--): nothing follows

    def __repr__(self) -> str:
        return f"Part(length={self.length}, timestamp={self.timestamp}, problem={self.problem!r})"


class PartSink(Protocol):
    """What a parser reports to."""

    def want_jpeg(self) -> bool:
        """Asked as each part starts: keep its JPEG bytes (`Part.jpeg`)?"""

    def on_part(self, part: Part) -> None:
        """A part is complete."""

    def on_error(self, reason: str) -> None:
        """The bytes do not follow the framing (see the module's docstring)."""


class MultipartParser:
    """The multipart/x-mixed-replace body (already de-chunked), for the boundary token ``boundary``.

    States follow the wire: the opening ``--token CRLF``, then per part its headers,
    ``Content-Length`` JPEG bytes and the delimiter ``CRLF --token CRLF`` that also opens the next
    part (or ``CRLF --token--``, the end). `feed` tests the JPEG state first: it is where almost
    every byte goes.
    """

    _DATA, _HEAD, _DELIM, _OPEN, _RESYNC, _END, _FAILED = range(7)

    def __init__(self, boundary: bytes, sink: PartSink, *, resync: bool = False) -> None:
        self._open = b"--" + boundary + CRLF
        self._delim = CRLF + b"--" + boundary + CRLF
        self._final = CRLF + b"--" + boundary + b"--"
        self._sink = sink
        self._resync = resync
        self.frames = 0  # parts reported
        self.errors = 0  # framing errors reported
        self.failed: str | None = None  # why the parser stopped (None: it has not)
        self._state = self._OPEN
        self._carry = bytearray()
        self._head = b""
        self._length = 0
        self._remaining = 0
        self._ts = math.nan
        self._problem: str | None = None
        self._soi = b""
        self._eoi = b""
        self._jpeg_end = math.nan
        self._capture: bytearray | None = None

    @property
    def ended(self) -> bool:
        """The final delimiter came."""
        return self._state == self._END

    @property
    def mid_jpeg(self) -> bool:
        """Inside a JPEG: some of its bytes have arrived, not all."""
        return self._state == self._DATA and 0 < self._remaining < self._length

    def fail(self, reason: str, fatal: bool = False) -> None:
        """Report a framing error; stop unless resyncing (a ``fatal`` one stops it anyway)."""
        self.errors += 1
        self._sink.on_error(reason)
        self._carry.clear()
        self._capture = None
        if fatal or not self._resync:
            if self.failed is None:
                self.failed = reason
            self._state = self._FAILED
        else:
            self._state = self._RESYNC

    def feed(self, buf: Buf, start: int, end: int, now: float) -> None:
        """Consume ``buf[start:end]``, which arrived at time ``now`` (any clock the caller likes)."""
        pos = start
        while pos < end:
            state = self._state
            if state == self._DATA:  # skip JPEG bytes, noting the first and the last two
                stop = pos + min(self._remaining, end - pos)
                if len(self._soi) < 2:
                    self._soi += buf[pos : min(stop, pos + 2 - len(self._soi))]
                if stop - pos >= 2:
                    self._eoi = buf[stop - 2 : stop]
                else:
                    self._eoi = (self._eoi + bytes(buf[pos:stop]))[-2:]
                if self._capture is not None:
                    self._capture += buf[pos:stop]
                self._remaining -= stop - pos
                pos = stop
                if not self._remaining:
                    self._jpeg_end = now
                    self._state = self._DELIM
            elif state == self._HEAD:
                pos = self._part_head(buf, pos, end, now)
            elif state == self._DELIM:
                pos = self._delimiter(buf, pos, end, now)
            elif state == self._OPEN:
                pos = self._opening(buf, pos, end)
            elif state == self._RESYNC:
                pos = self._scan(buf, pos, end)
            else:
                return

    def _opening(self, buf: Buf, pos: int, end: int) -> int:
        stop = min(end, pos + len(self._open) - len(self._carry))
        self._carry += buf[pos:stop]
        if len(self._carry) == len(self._open):
            if self._carry == self._open:
                self._carry.clear()
                self._state = self._HEAD
            else:
                self.fail(f"body does not start with the boundary line: {bytes(self._carry)!r}")
        return stop

    def _part_head(self, buf: Buf, pos: int, end: int, now: float) -> int:
        limit = min(end, pos + MAX_PART_HEAD - len(self._carry))
        if not self._carry:  # usually the whole head is in this read: no copy into the carry
            idx = buf.find(HEAD_END, pos, limit)
            if idx >= 0:
                self._start_part(bytes(buf[pos:idx]), now)
                return idx + 4
        old = len(self._carry)
        self._carry += buf[pos:limit]
        idx = self._carry.find(HEAD_END, max(0, old - 3))
        if idx < 0:
            if len(self._carry) >= MAX_PART_HEAD:
                self.fail(f"part headers longer than {MAX_PART_HEAD} bytes")
            return limit
        block = bytes(self._carry[:idx])
        self._carry.clear()
        self._start_part(block, now)
        return pos + idx + 4 - old

    def _start_part(self, block: bytes, now: float) -> None:
        exact = _EXACT_HEAD.fullmatch(block)  # what edge writes: one regex match, no loop
        if exact is not None:
            self._begin(block, int(exact.group(1)), float(exact.group(2)), None, now)
            return
        length = -1
        ts = math.nan
        ctype = None
        problem = None
        for line in block.split(CRLF):
            name, colon, value = line.partition(b":")
            name = name.strip().lower()
            value = value.strip()
            if not colon:
                problem = problem or f"part header line without a colon: {line[:60]!r}"
            elif name == b"content-length":
                length = int(value) if value.isdigit() else -2
            elif name == b"x-timestamp":
                try:
                    ts = float(value)
                except ValueError:
                    problem = problem or f"X-Timestamp is not a number: {value[:40]!r}"
            elif name == b"content-type":
                ctype = value
        if length < 0:
            what = "without Content-Length" if length == -1 else "with a Content-Length that is not a number"
            self.fail(f"part {what}: {block[:120]!r}")
            return
        if ctype != b"image/jpeg":
            problem = problem or f"part Content-Type is {ctype!r}, not image/jpeg"
        if math.isnan(ts) and problem is None:
            problem = "part without X-Timestamp"
        self._begin(block, length, ts, problem, now)

    def _begin(self, block: bytes, length: int, ts: float, problem: str | None, now: float) -> None:
        self._head = block
        self._length = self._remaining = length
        self._ts = ts
        self._problem = problem
        self._soi = b""
        self._eoi = b""
        self._jpeg_end = now
        self._capture = bytearray() if self._sink.want_jpeg() else None
        self._state = self._DATA if length else self._DELIM

    def _delimiter(self, buf: Buf, pos: int, end: int, now: float) -> int:
        want = len(self._delim)
        stop = min(end, pos + want - len(self._carry))
        self._carry += buf[pos:stop]
        if len(self._carry) < want:
            return stop
        carry = bytes(self._carry)
        if carry == self._delim:
            last = False
        elif carry == self._final:
            last = True
        else:
            reason = f"Content-Length {self._length} not followed by the boundary (got {carry!r})"
            if not self._resync:
                self.fail(reason)
                return stop
            # The delimiter may start inside the carry (a Content-Length too short): scan from it.
            self.errors += 1
            self._sink.on_error(reason)
            self._capture = None
            self._state = self._RESYNC
            return stop
        self._carry.clear()
        self._state = self._END if last else self._HEAD
        self.frames += 1
        jpeg_ok = self._soi == JPEG_SOI and self._eoi == JPEG_EOI
        problem = self._problem
        if not jpeg_ok and problem is None:
            problem = f"JPEG does not start FF D8 and end FF D9 ({self._soi.hex()}...{self._eoi.hex()})"
        jpeg = bytes(self._capture) if self._capture is not None else None
        self._capture = None
        self._sink.on_part(Part(self._head, self._length, self._ts, jpeg_ok, self._jpeg_end, now, jpeg, problem, last))
        return stop

    def _scan(self, buf: Buf, pos: int, end: int) -> int:
        """After a framing error (resync only): look for the next delimiter. This, the rare path,
        does look at JPEG bytes."""
        old = len(self._carry)
        window = self._carry + buf[pos:end]
        idx = window.find(self._delim)
        if idx >= 0:
            self._carry.clear()
            self._state = self._HEAD
            return pos + max(0, idx + len(self._delim) - old)
        self._carry = window[-(len(self._delim) - 1) :]
        return end
