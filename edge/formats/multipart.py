"""A ``multipart/x-mixed-replace`` MJPEG body cut into its parts: what an ``http://`` source
reads from mjpg-streamer, IP cameras or another edge. Pure bytes in, bytes out."""

from __future__ import annotations

import re
from typing import Final

from .jpeg import IMAGE_MARKER, MAX_FRAME_BYTES, SOI, IncompleteHeader, InvalidFrame, walk_header

#: Upper bound for the headers of one multipart part (they are a few short lines).
MAX_PART_HEADER_BYTES: Final = 8 * 1024

# Splitter states.
_SEEK: Final = 0  # looking for the start of a frame boundary
_HEADER: Final = 1  # reading a part's header lines
_BODY: Final = 2  # in a part's payload


# What may follow the boundary token on a delimiter line: the line end, "--" (the close
# delimiter) or transport padding. Anything else means the token was part of a longer word.
_AFTER_BOUNDARY: Final = frozenset(b"\r\n\t -")
# RFC 2046 boundary characters; a boundary learned from the stream must look like one, so a "--"
# line inside image data is not taken for it.
_BOUNDARY_TOKEN: Final = re.compile(rb"[0-9A-Za-z'()+_,\-./:=? ]{0,199}[0-9A-Za-z'()+_,\-./:=?]")
_MAX_BOUNDARY_LINE: Final = 256
# Where a boundary can be learned from: "--" at the start of a line (the stream's start counts as
# one; the buffer's start only when what was dropped before it ended with a line break).
_DASHES_AFTER_LINE_BREAK: Final = re.compile(rb"\n--")


class MultipartSplitter:
    """Cuts a ``multipart/x-mixed-replace`` MJPEG body (already de-chunked) into its payloads: what
    mjpg-streamer, IP cameras and edge itself (§4 of ``docs/interface.md``) serve.

    A part with ``Content-Length`` gives exactly that many bytes. A part without it ends at its
    JPEG's end of image (found as in `JpegStreamSplitter`) or at the next boundary, whichever comes
    first: using the end of image returns each frame as soon as it is complete, rather than one
    frame late from servers that send the boundary before each frame. Payloads are returned as the
    stream delimits them; whether they are good frames is for `check_frame` to say.

    ``boundary`` may be given with or without its leading ``--``, or learned from the first
    ``--token`` line. Delimiter lines may come with or without a line break before them, and lines
    may end with CRLF or LF; other part headers (X-Timestamp...) are ignored.

    Memory stays below ``max(max_part, max_header)`` plus one chunk, whatever the input: a part
    larger than ``max_part`` (or announcing it), or headers longer than ``max_header``, are discarded
    and the splitter resyncs on the next boundary.

    Counters: ``frames`` payloads returned; ``discarded`` parts thrown away; ``skipped_bytes``
    garbage skipped while looking for a boundary (line breaks around delimiters are not garbage).
    """

    def __init__(
        self,
        boundary: bytes | None = None,
        max_part: int = MAX_FRAME_BYTES,
        max_header: int = MAX_PART_HEADER_BYTES,
    ) -> None:
        needle = None
        if boundary is not None:
            # Searched for as is: the delimiter line that an RFC-minded server writes for a boundary
            # given with "--" ("----token") contains it too.
            needle = b"--" + (boundary[2:] if boundary.startswith(b"--") and len(boundary) > 2 else boundary)
            if needle == b"--" or b"\n" in needle or b"\r" in needle:
                raise ValueError(f"unusable multipart boundary {boundary!r}")
        if max_part < 1 or max_header < 1:
            raise ValueError("max_part and max_header must be positive")
        self.max_part = max_part
        self.max_header = max_header
        self.frames = 0
        self.discarded = 0
        self.skipped_bytes = 0
        self._needle = needle
        self._buf = bytearray()
        self._state = _SEEK
        self._pos = 0  # _SEEK: where to search for the boundary; _HEADER: the next header line
        self._length: int | None = None  # the part's Content-Length
        self._jpeg: bool | None = None  # part without length: does it start with SOI (None: not known yet)
        self._hdr = 2  # part without length: next JPEG marker to read
        self._scan = -1  # part without length: where to search for the end of image, once the header is walked
        self._bpos = 0  # part without length: where to search for the next boundary
        self._line_start = True  # learning: does the buffer's first byte begin a line

    @property
    def boundary(self) -> bytes | None:
        """The boundary token (without ``--``), given or learned; None until learned."""
        return None if self._needle is None else self._needle[2:]

    @property
    def buffered(self) -> int:
        """Bytes held back, waiting for the rest of a part."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Adds ``data``; returns the payloads it completed, in order."""
        self._buf += data
        payloads: list[bytes] = []
        while True:
            if self._state == _SEEK:
                progress = self._seek() if self._needle is not None else self._learn()
            elif self._state == _HEADER:
                progress = self._headers()
            elif self._length is not None:
                progress = self._sized_body(payloads)
            else:
                progress = self._open_body(payloads)
            if not progress:
                return payloads

    def _skip(self, n: int) -> None:
        """Drops ``n`` bytes before a delimiter, counting them unless they are just line breaks."""
        if n and self._buf[:n].strip(b"\r\n"):
            self.skipped_bytes += n
        del self._buf[:n]

    def _line_end(self, start: int, line: int) -> int | None:
        """Where the delimiter line that begins at ``line`` ends (its LF): ``None`` when it is not
        all here yet (what precedes it is dropped: wait for more), -1 when it is too long to be one."""
        buf = self._buf
        eol = buf.find(b"\n", start, start + _MAX_BOUNDARY_LINE)
        if eol >= 0:
            return eol
        if len(buf) - start < _MAX_BOUNDARY_LINE:
            self._skip(line)
            self._line_start = True  # `line` began a line
            self._pos = 0
            return None
        return -1

    def _take_line(self, line: int, eol: int) -> None:
        """Drop everything up to and including the delimiter line at ``line``..``eol``."""
        self._skip(line)
        del self._buf[: eol + 1 - line]
        self._line_start = True
        self._pos = 0

    def _seek(self) -> bool:
        buf = self._buf
        needle = self._needle
        assert needle is not None
        while True:
            i = buf.find(needle, self._pos)
            if i < 0:
                # Keep what could be the beginning of a delimiter cut by the chunking.
                self._skip(max(0, len(buf) - len(needle) + 1))
                self._pos = 0
                return False
            after = i + len(needle)
            if after >= len(buf):
                self._skip(i)
                self._pos = 0
                return False
            if buf[after] not in _AFTER_BOUNDARY:
                self._pos = i + 1
                continue
            eol = self._line_end(after, i)
            if eol is None:
                return False
            if eol < 0:
                self._pos = after  # an endless "delimiter line": junk
                continue
            close = buf.startswith(b"--", after)
            self._take_line(i, eol)
            if not close:  # after the close delimiter only an epilogue follows: keep seeking
                self._state = _HEADER
                self._length = None
            return True

    def _dashes_at_line_start(self, start: int) -> int:
        """Where the first "--" that begins a line is, at or after ``start``; -1 when there is none."""
        buf = self._buf
        if start == 0 and self._line_start and buf.startswith(b"--"):
            return 0
        found = _DASHES_AFTER_LINE_BREAK.search(buf, max(0, start - 1))
        return -1 if found is None else found.start() + 1

    def _learn(self) -> bool:
        buf = self._buf
        while True:
            i = self._dashes_at_line_start(self._pos)
            if i < 0:
                # Keep what may become "--" at a line start with the next chunk, and whether the
                # next chunk starts a line: a read may end anywhere, even inside the dashes.
                if buf.endswith(b"\n-") or (buf == b"-" and self._line_start):
                    keep, line_start = 1, True
                elif buf:
                    keep, line_start = 0, buf.endswith(b"\n")
                else:
                    keep, line_start = 0, self._line_start
                self._skip(len(buf) - keep)
                self._line_start = line_start
                self._pos = 0
                return False
            eol = self._line_end(i, i)
            if eol is None:
                return False
            if eol < 0:
                self._pos = i + 2
                continue
            token = bytes(buf[i + 2 : eol]).rstrip(b"\r\t ")
            if _BOUNDARY_TOKEN.fullmatch(token) is None:
                self._pos = i + 2
                continue
            self._needle = b"--" + token
            self._take_line(i, eol)
            self._state = _HEADER
            self._length = None
            return True

    def _headers(self) -> bool:
        buf = self._buf
        if self._pos == 0:
            if len(buf) < 2:
                return False
            if buf.startswith(SOI):
                self._start_body()  # a part without headers (or their blank line)
                return True
        while True:
            eol = buf.find(b"\n", self._pos)
            if eol >= self.max_header or (eol < 0 and len(buf) > self.max_header):
                # Headers that never end: give up on this part; the boundary search trims the buffer.
                self.discarded += 1
                self._state, self._pos = _SEEK, 0
                return True
            if eol < 0:
                return False
            line = bytes(buf[self._pos : eol]).strip()
            self._pos = eol + 1
            if not line:
                del buf[: self._pos]
                self._start_body()
                return True
            name, colon, value = line.partition(b":")
            if colon and name.strip().lower() == b"content-length":
                value = value.strip()
                self._length = int(value) if value.isdigit() else None

    def _start_body(self) -> None:
        self._state = _BODY
        self._pos = 0
        self._jpeg = None
        self._hdr = 2
        self._scan = -1
        self._bpos = 0

    def _emit(self, payloads: list[bytes], size: int, consumed: int) -> None:
        if size:
            payloads.append(bytes(self._buf[:size]))
            self.frames += 1
        del self._buf[:consumed]
        self._state, self._pos = _SEEK, 0

    def _discard(self, consumed: int) -> None:
        self.discarded += 1
        del self._buf[:consumed]
        self._state, self._pos = _SEEK, 0

    def _sized_body(self, payloads: list[bytes]) -> bool:
        length = self._length
        assert length is not None
        if length > self.max_part:
            self.discarded += 1
            self._state, self._pos = _SEEK, 0
            return True
        if len(self._buf) < length:
            return False
        self._emit(payloads, length, length)
        return True

    def _open_body(self, payloads: list[bytes]) -> bool:
        buf = self._buf
        needle = self._needle
        assert needle is not None
        # Where the part ends at the latest: the next delimiter.
        cut = -1
        limit = len(buf)
        while True:
            i = buf.find(needle, self._bpos)
            if i < 0:
                self._bpos = max(self._bpos, len(buf) - len(needle) + 1)
                break
            after = i + len(needle)
            if after >= len(buf):  # perhaps a delimiter: search the JPEG only up to it for now
                self._bpos = limit = i
                break
            if buf[after] in _AFTER_BOUNDARY:
                cut = limit = i
                break
            self._bpos = i + 1
        if self._jpeg is None and (limit >= 2 or cut >= 0):
            self._jpeg = buf.startswith(SOI)
        if self._jpeg:
            if self._scan < 0:
                try:
                    self._scan = walk_header(buf, self._hdr, limit).scan
                except IncompleteHeader as e:
                    self._hdr = e.resume
                except InvalidFrame:
                    self._jpeg = False
            if self._scan >= 0:
                found = IMAGE_MARKER.search(buf, self._scan, limit)
                if found is None:
                    self._scan = max(self._scan, limit - 1)
                elif buf[found.start() + 1] == 0xD9:
                    if found.end() > self.max_part:
                        self._discard(found.end())
                    else:
                        self._emit(payloads, found.end(), found.end())
                    return True
                else:
                    # Another image starts inside the scan: this one lost its end. The part
                    # ends at the delimiter then, and check_frame will say it is broken.
                    self._jpeg = False
        if cut >= 0:
            # Not a complete JPEG, or not a JPEG: the part is what precedes the delimiter's line break.
            size = cut
            if size and buf[size - 1] == 0x0A:
                size -= 1
            if size and buf[size - 1] == 0x0D:
                size -= 1
            if size > self.max_part:  # as if it had arrived in reads: too large however it comes
                self._discard(cut)
            else:
                self._emit(payloads, size, cut)
            return True
        if len(buf) > self.max_part:
            self.discarded += 1
            self._state, self._pos = _SEEK, 0
            return True
        return False


_PARAMETER: Final = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_QUOTED_PAIR: Final = re.compile(r"\\(.)")


def boundary_from_content_type(value: str) -> bytes | None:
    """The ``boundary`` parameter of a Content-Type header value (quoted or not, as given: a
    leading ``--`` is kept), or None when there is none."""
    for match in _PARAMETER.finditer(value):
        if match.group(1).lower() != "boundary":
            continue
        raw = match.group(2).strip()
        if raw.startswith('"'):
            raw = _QUOTED_PAIR.sub(r"\1", raw[1:-1]) if len(raw) > 1 and raw.endswith('"') else raw[1:]
        if not raw:
            return None
        try:
            return raw.encode("ascii")
        except UnicodeEncodeError:
            return None
    return None
