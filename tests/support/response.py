"""The HTTP response around the parts `tests.support.multipart.MultipartParser` splits: the head,
and the chunked transfer coding of an HTTP/1.1 body (§4 of docs/interface.md).

Same rules as the parser (see its module): ``(buf, start, end)`` ranges of a reused buffer, no
reference kept, chunk payloads passed on as ranges of the same buffer, only the short lines
copied.
"""

from __future__ import annotations

import re

from tests.support.http import header_fields, status_code
from tests.support.multipart import CRLF, HEAD_END, Buf, MultipartParser, PartSink

MAX_RESPONSE_HEAD = 16 * 1024
MAX_CHUNK_LINE = 1024
MULTIPART = "multipart/x-mixed-replace"
# A chunk size line: hex digits, an optional extension, CRLF (a bare LF is not HTTP/1.1).
_CHUNK_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r\n")


class ChunkedDecoder:
    """Removes HTTP/1.1 chunked transfer coding in front of a `MultipartParser`: chunk payloads
    go on as ranges of the same buffer. Strict (edge's chunks are §4's): a size line is hex digits
    (an extension after ``;`` is allowed) ending in CRLF, and CRLF follows every chunk's data.
    Trailers after the last chunk are ignored."""

    _SIZE, _DATA, _CRLF, _END, _FAILED = range(5)

    def __init__(self, parser: MultipartParser) -> None:
        self._parser = parser
        self._state = self._SIZE
        self._carry = bytearray()
        self._remaining = 0

    @property
    def ended(self) -> bool:
        """The last (zero-size) chunk came."""
        return self._state == self._END

    def feed(self, buf: Buf, start: int, end: int, now: float) -> None:
        pos = start
        parser = self._parser
        while pos < end:
            state = self._state
            if state == self._DATA:
                stop = pos + min(self._remaining, end - pos)
                parser.feed(buf, pos, stop, now)
                self._remaining -= stop - pos
                pos = stop
                if not self._remaining:
                    self._state = self._CRLF
            elif state == self._SIZE:
                pos = self._size_line(buf, pos, end)
            elif state == self._CRLF:
                stop = min(end, pos + 2 - len(self._carry))
                self._carry += buf[pos:stop]
                pos = stop
                if len(self._carry) == 2:
                    if self._carry != CRLF:
                        self._fail(f"chunk data not followed by CRLF: {bytes(self._carry)!r}")
                        return
                    self._carry.clear()
                    self._state = self._SIZE
            else:
                return

    def _fail(self, reason: str) -> None:
        self._state = self._FAILED
        self._parser.fail(reason, fatal=True)

    def _size_line(self, buf: Buf, pos: int, end: int) -> int:
        idx = buf.find(b"\n", pos, end)
        if idx < 0:
            self._carry += buf[pos:end]
            if len(self._carry) > MAX_CHUNK_LINE:
                self._fail("chunk size line too long")
            return end
        line = bytes(self._carry + buf[pos : idx + 1])
        self._carry.clear()
        m = _CHUNK_SIZE_LINE.fullmatch(line)
        if m is None:
            self._fail(f"bad chunk size line {line[:40]!r}")
            return end
        size = int(m.group(1), 16)
        if size == 0:
            self._state = self._END
        else:
            self._remaining = size
            self._state = self._DATA
        return idx + 1


def boundary_of(content_type: str) -> bytes | None:
    """The boundary token of a ``multipart/x-mixed-replace`` Content-Type value (None if it is not
    one, or names no boundary)."""
    if not content_type.lower().startswith(MULTIPART):
        return None
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary" and value:
            return value.strip('"').encode("latin-1")
    return None


class MjpegBody:
    """An MJPEG response body: de-chunked when ``chunked``, then split into parts."""

    def __init__(self, boundary: bytes, chunked: bool, sink: PartSink, *, resync: bool = False) -> None:
        self.parts = MultipartParser(boundary, sink, resync=resync)
        self._chunks = ChunkedDecoder(self.parts) if chunked else None
        self.feed = self._chunks.feed if self._chunks is not None else self.parts.feed

    @property
    def ended(self) -> bool:
        """The final delimiter or the last chunk came."""
        return self.parts.ended or (self._chunks is not None and self._chunks.ended)


class MjpegResponse:
    """A whole MJPEG response as it arrives: the head (read leniently: an answer that is not a
    stream is recorded, not raised), then the body. ``failed`` says why it stopped, if it did:
    an answer other than 200 with a multipart Content-Type, or a framing error (`MjpegBody`)."""

    def __init__(self, sink: PartSink, *, resync: bool = False) -> None:
        self._sink = sink
        self._resync = resync
        self._head = bytearray()
        self.head_done = False
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunked = False
        self.body: MjpegBody | None = None
        self._failed: str | None = None

    @property
    def failed(self) -> str | None:
        if self._failed is None and self.body is not None:
            return self.body.parts.failed
        return self._failed

    @property
    def ended(self) -> bool:
        return self.body is not None and self.body.ended

    @property
    def done(self) -> bool:
        """Nothing more will be parsed: ended or failed."""
        return self.ended or self.failed is not None

    @property
    def frames(self) -> int:
        return 0 if self.body is None else self.body.parts.frames

    @property
    def mid_jpeg(self) -> bool:
        return self.body is not None and self.body.parts.mid_jpeg

    def feed(self, buf: Buf, start: int, end: int, now: float) -> None:
        """Consume ``buf[start:end]``, which arrived at time ``now``."""
        if self.body is not None:
            self.body.feed(buf, start, end, now)
            return
        if self._failed is not None:
            return
        old = len(self._head)
        self._head += buf[start : min(end, start + MAX_RESPONSE_HEAD - old)]
        idx = self._head.find(HEAD_END, max(0, old - 3))
        if idx < 0:
            if len(self._head) >= MAX_RESPONSE_HEAD:
                self._failed = "response head too long"
            return
        body_start = start + idx + 4 - old
        self._start(bytes(self._head[:idx]))
        self._head = bytearray()
        if self.body is not None and body_start < end:
            self.body.feed(buf, body_start, end, now)

    def _start(self, block: bytes) -> None:
        self.head_done = True
        self.status = status_code(block)
        self.headers = header_fields(block)
        if self.status != 200:
            self._failed = f"HTTP {self.status}"
            return
        ctype = self.headers.get("content-type", "")
        boundary = boundary_of(ctype)
        if boundary is None:
            self._failed = f"not a multipart stream: {ctype!r}"
            return
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        self.body = MjpegBody(boundary, self.chunked, self._sink, resync=self._resync)
