"""The load client's requests and its reading of a response head (leniently: a benchmark records a
broken answer as a failed client instead of stopping).

The per-frame parsing (chunked coding, the multipart body) is the test suite's one MJPEG parser,
`tests.support.multipart` (through `tests.support.response`), the same the soak and the tests'
`MjpegStream` use: it works on ranges of a reused receive buffer, keeps no reference to it, and
never copies or scans JPEG bytes (``Content-Length`` says how many to skip; only the first and
last two are looked at), so a frame costs the client a handful of Python operations, which
matters with 500 clients on 2 cores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.support.http import header_fields, status_code
from tests.support.multipart import HEAD_END, JPEG_EOI, JPEG_SOI
from tests.support.response import MAX_RESPONSE_HEAD, boundary_of

__all__ = [
    "HEADER_END",
    "JPEG_EOI",
    "JPEG_SOI",
    "MAX_RESPONSE_HEAD",
    "REQUIRED_HEAD",
    "ResponseHead",
    "build_request",
    "parse_head",
]

HEADER_END = HEAD_END
# Headers §4 of docs/interface.md requires on every MJPEG response.
REQUIRED_HEAD = {
    "cache-control": "no-store, no-cache, must-revalidate, max-age=0",
    "pragma": "no-cache",
    "x-accel-buffering": "no",
}


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
        return boundary_of(self.headers.get("content-type", ""))

    def head_problems(self) -> list[str]:
        """Differences from the head required by §4 of docs/interface.md (reported, not fatal)."""
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
