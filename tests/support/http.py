"""HTTP on the wire: request heads, response heads, and bodies read off a raw socket.

Two readings of a response head: `read_http_head` is strict (the server's own heads are part of
the interface, §3 and §4 of docs/interface.md: every malformed line fails the test),
`status_code` and `header_fields` are lenient (a client that sent garbage records whatever came
back, a non-HTTP answer included). `BodyReader` reads a body off a blocking socket, de-chunking
`Transfer-Encoding: chunked` by hand and checking every chunk line (MJPEG streams go through
`tests.support.response` instead). `fetch` is for ordinary requests, through httpx, and never
hangs on an endless stream; `http_server` is a small server of the test's own.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support.sockets import StreamEnded

STATUS_LINE_RE = re.compile(r"(HTTP/\d\.\d) (\d{3})(?: (.*))?")
LENIENT_STATUS_RE = re.compile(rb"HTTP/\d\.\d (\d{3})(?![^ \r\n])")


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------


def merge_headers(base: Mapping[str, str], extra: Mapping[str, str] | None) -> dict[str, str]:
    """`base` with `extra` added; a name in `extra` replaces the same name in `base` (any case)."""
    merged = dict(base)
    for name, value in (extra or {}).items():
        merged = {k: v for k, v in merged.items() if k.lower() != name.lower()}
        merged[name] = value
    return merged


def request_head(method: str, path: str, headers: Mapping[str, str], version: str = "HTTP/1.1") -> bytes:
    """A request line and header fields, in the given order, ending with the empty line."""
    lines = [f"{method} {path} {version}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# --------------------------------------------------------------------------------------------
# Response heads
# --------------------------------------------------------------------------------------------


@dataclass
class HttpHead:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    raw: bytes

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def get(self, name: str) -> str | None:
        values = self.get_all(name)
        return values[0] if values else None


def parse_head(raw: bytes) -> HttpHead:
    """A response head (without the empty line), every line checked."""
    lines = raw.decode("latin-1").split("\r\n")
    m = STATUS_LINE_RE.fullmatch(lines[0])
    assert m, f"bad status line {lines[0]!r}"
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        assert ":" in line, f"bad header line {line!r}"
        k, v = line.split(":", 1)
        headers.append((k.strip(), v.strip()))
    return HttpHead(m.group(1), int(m.group(2)), m.group(3) or "", headers, raw)


def read_http_head(sock: socket.socket, limit: int = 65536) -> tuple[HttpHead, bytes]:
    """Read a response head; returns it and any body bytes already received."""
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        assert len(buf) < limit, "response head too long"
        data = sock.recv(65536)
        if not data:
            raise StreamEnded(f"EOF before end of response head; got {bytes(buf)!r}")
        buf += data
    idx = buf.index(b"\r\n\r\n")
    return parse_head(bytes(buf[:idx])), bytes(buf[idx + 4 :])


def status_code(data: bytes | bytearray) -> int:
    """The status code `data` starts with, 0 when it does not start with a status line."""
    m = LENIENT_STATUS_RE.match(bytes(data))
    return int(m.group(1)) if m else 0


def header_fields(head: bytes | bytearray) -> dict[str, str]:
    """Header fields of a response head, names lower-cased, the last of a repeated name winning."""
    fields: dict[str, str] = {}
    for line in bytes(head).split(b"\r\n")[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        fields[name.strip().lower()] = value.strip()
    return fields


# --------------------------------------------------------------------------------------------
# Bodies
# --------------------------------------------------------------------------------------------


class BodyReader:
    """Buffered reader over a socket, transparently de-chunking `Transfer-Encoding: chunked`."""

    def __init__(self, sock: socket.socket, initial: bytes, chunked: bool) -> None:
        self.sock = sock
        self.chunked = chunked
        self._raw = bytearray(initial)
        self._buf = bytearray()
        self._chunk_left = 0
        self._state = "size"  # size | data | crlf | done
        self.eof = False
        self.consumed = 0
        self._decode()

    def _decode(self) -> None:
        if not self.chunked:
            self._buf += self._raw
            self._raw.clear()
            return
        while True:
            if self._state == "size":
                idx = self._raw.find(b"\r\n")
                if idx < 0:
                    assert len(self._raw) < 1024, "chunk size line too long"
                    return
                line = bytes(self._raw[:idx]).split(b";", 1)[0].strip()
                del self._raw[: idx + 2]
                assert re.fullmatch(rb"[0-9a-fA-F]+", line), f"bad chunk size line {line!r}"
                size = int(line, 16)
                if size == 0:
                    self._state = "done"
                    return
                self._chunk_left = size
                self._state = "data"
            elif self._state == "data":
                if not self._raw:
                    return
                take = min(len(self._raw), self._chunk_left)
                self._buf += self._raw[:take]
                del self._raw[:take]
                self._chunk_left -= take
                if self._chunk_left == 0:
                    self._state = "crlf"
            elif self._state == "crlf":
                if len(self._raw) < 2:
                    return
                assert self._raw[:2] == b"\r\n", f"chunk not followed by CRLF: {self._raw[:2]!r}"
                del self._raw[:2]
                self._state = "size"
            else:
                return

    def _pump(self) -> None:
        if self.eof or self._state == "done":
            raise StreamEnded("stream ended")
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError) as exc:
            self.eof = True
            raise StreamEnded(f"connection reset: {exc}") from exc
        if not data:
            self.eof = True
            raise StreamEnded("EOF")
        self._raw += data
        self._decode()

    def buffered(self) -> int:
        return len(self._buf)

    def read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._pump()
        out = bytes(self._buf[:n])
        del self._buf[:n]
        self.consumed += n
        return out

    def read_until(self, delim: bytes, limit: int = 65536) -> bytes:
        """Read up to and including `delim`; fail if it does not appear within `limit` bytes."""
        start = 0
        while True:
            idx = self._buf.find(delim, start)
            if idx >= 0:
                return self.read_exact(idx + len(delim))
            assert len(self._buf) <= limit, f"{delim!r} not found within {limit} bytes"
            start = max(0, len(self._buf) - len(delim) + 1)
            self._pump()

    def read_some(self, max_bytes: int = 65536) -> bytes:
        """At least one byte (blocking), at most `max_bytes`."""
        if not self._buf:
            self._pump()
        n = min(max_bytes, len(self._buf))
        return self.read_exact(n) if n else b""


# --------------------------------------------------------------------------------------------
# Ordinary requests (httpx)
# --------------------------------------------------------------------------------------------


def http_client(timeout: float = 10.0, source_ip: str | None = None) -> httpx.Client:
    """httpx client that never uses a proxy (all traffic stays on loopback); `source_ip` connects
    from another loopback address (another client to the server's per-address limits)."""
    transport = httpx.HTTPTransport(local_address=source_ip) if source_ip is not None else None
    return httpx.Client(timeout=timeout, trust_env=False, transport=transport)


@dataclass
class FetchResult:
    status: int
    headers: httpx.Headers
    body: bytes | None  # None when the answer was an (endless) multipart stream

    def json(self) -> Any:
        assert self.body is not None
        return json.loads(self.body)


def fetch(
    url: str,
    timeout: float = 10.0,
    max_body: int = 8 * 1024 * 1024,
    *,
    headers: Mapping[str, str] | None = None,
    source_ip: str | None = None,
) -> FetchResult:
    """GET `url`; never hangs on an endless stream (stops after the head for multipart answers).

    Endpoints that should answer an error might wrongly answer a stream; reading that body
    would never end, so a multipart body is not read.
    """
    with http_client(timeout, source_ip) as client, client.stream("GET", url, headers=headers) as r:
        ctype = r.headers.get("content-type", "")
        if ctype.startswith("multipart/"):
            return FetchResult(r.status_code, r.headers, None)
        body = bytearray()
        for chunk in r.iter_bytes():
            body += chunk
            if len(body) > max_body:
                raise AssertionError(f"{url}: body larger than {max_body} bytes")
        return FetchResult(r.status_code, r.headers, bytes(body))


@contextlib.contextmanager
def http_server(handler: Callable[..., http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    """A threaded `http.server` on 127.0.0.1 for the duration of the block; yields its port
    (another origin for the viewer, a file for an http:// camera)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
