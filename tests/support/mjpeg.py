"""An MJPEG viewer on a raw socket that checks the multipart framing byte for byte (CONTRACT §4).

Existing front-ends and mjpg-streamer clients parse the stream with fragile hand-written code, so
a stray part header, a quoted boundary or a missing CRLF breaks them even though browsers cope:
`MjpegStream.read_part` fails on any of those. It reads only when asked, so a test can stop
reading to play a stalled viewer (see edge/mjpeg.py for the server side).
"""

from __future__ import annotations

import re
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass

from tests.support.http import BodyReader, HttpHead, merge_headers, read_http_head, request_head
from tests.support.sockets import close_socket, open_socket

CONTENT_TYPE_RE = re.compile(r"multipart/x-mixed-replace; boundary=(?P<b>[^\s;\"]+)")
TIMESTAMP_RE = re.compile(r"\d+\.\d{6}")


@dataclass
class MjpegPart:
    jpeg: bytes
    timestamp: float
    timestamp_text: str
    received_at: float  # time.time() when the part was fully read


class MjpegStream:
    """A raw-socket MJPEG client that checks CONTRACT §4 framing byte for byte as it reads.

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
        self.body: BodyReader | None = None
        self.boundary = ""
        self._started = False
        if read_head:
            self.read_head()

    def read_head(self) -> HttpHead:
        head, rest = read_http_head(self.sock)
        self.head = head
        te = (head.get("Transfer-Encoding") or "").lower()
        self.body = BodyReader(self.sock, rest, chunked="chunked" in te)
        ctype = head.get("Content-Type") or ""
        m = CONTENT_TYPE_RE.fullmatch(ctype)
        if m:
            self.boundary = m.group("b")
        return head

    def start_body(self) -> None:
        """The body must begin with `--<token>\\r\\n` (boundary before the first frame)."""
        assert self.body is not None and self.boundary, "no multipart head"
        first = self.body.read_exact(len(self.boundary) + 4)
        assert first == b"--" + self.boundary.encode() + b"\r\n", f"body starts with {first!r}"
        self._started = True

    def read_part(self) -> MjpegPart:
        """Read one part and verify its exact layout (CONTRACT §4)."""
        assert self.body is not None
        if not self._started:
            self.start_body()
        hdr = self.body.read_until(b"\r\n\r\n", limit=4096)
        lines = hdr[:-4].split(b"\r\n")
        assert len(lines) == 3, f"part must have exactly 3 header lines, got {lines!r}"
        assert lines[0] == b"Content-Type: image/jpeg", f"first part header {lines[0]!r}"
        m_len = re.fullmatch(rb"Content-Length: (\d+)", lines[1])
        assert m_len, f"second part header {lines[1]!r}"
        m_ts = re.fullmatch(rb"X-Timestamp: (\d+\.\d{6})", lines[2])
        assert m_ts, f"third part header {lines[2]!r}"
        jpeg = self.body.read_exact(int(m_len.group(1)))
        tail = self.body.read_exact(len(self.boundary) + 6)
        expected = b"\r\n--" + self.boundary.encode() + b"\r\n"
        assert tail == expected, f"JPEG not followed by CRLF + boundary: {tail!r}"
        assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9", "part is not a complete JPEG"
        ts_text = m_ts.group(1).decode()
        return MjpegPart(jpeg, float(ts_text), ts_text, time.time())

    def read_parts(self, n: int) -> list[MjpegPart]:
        return [self.read_part() for _ in range(n)]

    def close(self, rst: bool = False) -> None:
        close_socket(self.sock, rst)

    def __enter__(self) -> MjpegStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
