"""An MJPEG viewer on a raw socket that checks the multipart framing byte for byte (§4 of
docs/interface.md).

Existing front-ends and mjpg-streamer clients parse the stream with fragile hand-written code, so
a stray part header, a quoted boundary or a missing CRLF breaks them even though browsers cope:
`MjpegStream.read_part` fails on any of those. The bytes go through the suite's one MJPEG parser
(`tests.support.multipart`, the soak's and the benchmark's too); on top of it `read_part` wants
each part's headers exactly as §4 writes them. It reads only when asked, so a test can stop
reading to play a stalled viewer (see edge/web/mjpeg.py for the server side).
"""

from __future__ import annotations

import collections
import re
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass

from tests.support.http import HttpHead, merge_headers, read_http_head, request_head
from tests.support.multipart import Part
from tests.support.response import MjpegBody, boundary_of
from tests.support.sockets import StreamEnded, close_socket, open_socket

CONTENT_TYPE_RE = re.compile(r"multipart/x-mixed-replace; boundary=(?P<b>[^\s;\"]+)")
TIMESTAMP_RE = re.compile(r"\d+\.\d{6}")
# A part's headers exactly as §4 writes them: these three, in this order, nothing else.
PART_HEAD_RE = re.compile(rb"Content-Type: image/jpeg\r\nContent-Length: (\d+)\r\nX-Timestamp: (\d+\.\d{6})")
READ_SIZE = 65536


@dataclass
class MjpegPart:
    jpeg: bytes
    timestamp: float
    timestamp_text: str
    received_at: float  # time.time() when read_part returned it
    jpeg_end_at: float = 0.0  # time.time() when the JPEG's last byte arrived
    boundary_at: float = 0.0  # time.time() when the boundary after it arrived


class MjpegStream:
    """A raw-socket MJPEG client that checks §4's framing byte for byte as it reads.

    `headers` adds to (or replaces) the request's header fields; `ssl_context` speaks TLS.
    """

    def __init__(
        self,
        host: str,
        port: int,
        path: str = "/stream",
        *,
        http10: bool = False,
        rcvbuf: int | None = None,
        timeout: float = 10.0,
        read_head: bool = True,
        headers: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.path = path
        self.sock = open_socket(host, port, rcvbuf=rcvbuf, timeout=timeout)
        self.local_port = int(self.sock.getsockname()[1])  # kept: still needed after close()
        if ssl_context is not None:
            self.sock = ssl_context.wrap_socket(self.sock, server_hostname=host)
        fields = {"Host": f"{host}:{port}", "User-Agent": "edge-tests"}
        if not http10:
            fields["Connection"] = "keep-alive"
        fields["Accept"] = "*/*"
        version = "HTTP/1.0" if http10 else "HTTP/1.1"
        self.sock.sendall(request_head("GET", path, merge_headers(fields, headers), version))
        self.head: HttpHead | None = None
        self.boundary = ""
        self.chunked = False
        self.eof = False  # the connection ended (EOF or reset), not the body
        self._body: MjpegBody | None = None
        self._parts: collections.deque[Part] = collections.deque()
        self._buf = bytearray(READ_SIZE)
        if read_head:
            self.read_head()

    def read_head(self) -> HttpHead:
        head, rest = read_http_head(self.sock)
        self.head = head
        ctype = head.get("Content-Type") or ""
        m = CONTENT_TYPE_RE.fullmatch(ctype)
        if m:
            self.boundary = m.group("b")
            boundary = boundary_of(ctype)
            assert boundary is not None
            self.chunked = "chunked" in (head.get("Transfer-Encoding") or "").lower()
            self._body = MjpegBody(boundary, self.chunked, self)
            if rest:
                self._body.feed(rest, 0, len(rest), time.time())
        return head

    # -- tests.support.multipart.PartSink -----------------------------------------------------

    def want_jpeg(self) -> bool:
        return True

    def on_part(self, part: Part) -> None:
        self._parts.append(part)

    def on_error(self, reason: str) -> None:
        pass  # the parser stops; read_part raises with its reason

    # -- reading ------------------------------------------------------------------------------

    def _pump(self, size: int = READ_SIZE) -> int:
        """One read from the socket into the parser (blocking, within the socket's timeout); how
        many bytes it got."""
        body = self._body
        assert body is not None, "no multipart head"
        if body.parts.failed is not None:
            raise AssertionError(f"MJPEG framing: {body.parts.failed}")
        if body.ended or self.eof:
            raise StreamEnded("stream ended")
        try:
            n = self.sock.recv_into(self._buf, size)
        except (ConnectionResetError, BrokenPipeError) as exc:
            self.eof = True
            raise StreamEnded(f"connection reset: {exc}") from exc
        if not n:
            self.eof = True
            raise StreamEnded("EOF")
        body.feed(self._buf, 0, n, time.time())
        return n

    def read_part(self) -> MjpegPart:
        """Read one part and verify its exact layout (§4)."""
        while not self._parts:
            self._pump()
        part = self._parts.popleft()
        m = PART_HEAD_RE.fullmatch(part.head)
        assert m, f"part headers must be exactly Content-Type, Content-Length, X-Timestamp: {part.head!r}"
        assert not part.last, "the stream ended with a close delimiter"
        assert part.jpeg is not None and part.jpeg_ok, f"part is not a complete JPEG: {part.problem}"
        ts_text = m.group(2).decode()
        return MjpegPart(part.jpeg, float(ts_text), ts_text, time.time(), part.jpeg_end, part.at)

    def read_parts(self, n: int) -> list[MjpegPart]:
        return [self.read_part() for _ in range(n)]

    def read_some(self, max_bytes: int = READ_SIZE) -> int:
        """One read of at most `max_bytes` (a slow reader's pace), parsed like any other; how many
        bytes it got (the parts it completed wait for `read_part`)."""
        return self._pump(max_bytes)

    def read_into_jpeg(self) -> None:
        """Read until inside a JPEG (its start has arrived, its end has not), in small reads, to
        leave the server in the middle of a frame."""
        assert self._body is not None, "no multipart head"
        while not self._body.parts.mid_jpeg:
            self._pump(256)

    def close(self, rst: bool = False) -> None:
        close_socket(self.sock, rst)

    def __enter__(self) -> MjpegStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
