"""What a hostile client on the LAN does, as fast as one Python thread can (tests/test_hostile.py,
the soak's attackers).

Each attack connects from a loopback address of its own (`source_ip`), so the server's
per-address limits see it as the separate client it would be, and records what the server did
about it, so the test can assert both the defence (a close code, a 429, a closed socket) and
that the legitimate viewer never noticed (`tests.support.rate`).
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from dataclasses import dataclass, field

from tests.support.http import read_http_head, request_head
from tests.support.sockets import abort_socket, open_socket
from tests.support.websocket import OP_CLOSE, OP_CONT, OP_PING, OP_TEXT, accept_for, new_key, upgrade_headers


def masked_frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """One masked client frame (RFC 6455 §5.2), final or not."""
    mask = os.urandom(4)
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        head = struct.pack(">BB", b0, 0x80 | n)
    elif n < 65536:
        head = struct.pack(">BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack(">BBQ", b0, 0x80 | 127, n)
    return head + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload))


def fragment_flood(count: int) -> bytes:
    """A text message that never ends: a non-final empty frame, then empty continuations."""
    return masked_frame(OP_TEXT, fin=False) + masked_frame(OP_CONT, fin=False) * count


def ping_flood(count: int) -> bytes:
    return masked_frame(OP_PING, b"p") * count


def text_flood(count: int) -> bytes:
    return b"".join(masked_frame(OP_TEXT, b'{"type": "bogus-%d"}' % i) for i in range(count))


@dataclass
class ServerFrames:
    """The server's frames, parsed incrementally from what a flooding client happens to read."""

    buf: bytearray = field(default_factory=bytearray)
    texts: int = 0
    binaries: int = 0
    pongs: int = 0
    close_code: int | None = None
    closed_at: float | None = None  # time.monotonic() when the close frame arrived

    def feed(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 2:
            n = self.buf[1] & 0x7F
            start = 2 + (2 if n == 126 else 8 if n == 127 else 0)
            if len(self.buf) < start:
                return
            if n == 126:
                n = struct.unpack(">H", self.buf[2:4])[0]
            elif n == 127:
                n = struct.unpack(">Q", self.buf[2:10])[0]
            if len(self.buf) < start + n:
                return
            opcode, payload = self.buf[0] & 0x0F, bytes(self.buf[start : start + n])
            del self.buf[: start + n]
            if opcode == OP_TEXT:
                self.texts += 1
            elif opcode == 2:
                self.binaries += 1
            elif opcode == 10:
                self.pongs += 1
            elif opcode == OP_CLOSE and self.close_code is None:
                self.close_code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
                self.closed_at = time.monotonic()


@dataclass
class Flooded:
    """One flooding connection: what the server sent, when it closed, how it ended."""

    frames: ServerFrames
    sent: int  # bytes the client managed to send
    dropped_at: float | None  # time.monotonic() of EOF or reset, None if still open at the end
    ending: str  # "eof" | "reset" | "open"
    texts_after_close: int = 0

    @property
    def close_to_drop(self) -> float | None:
        """Seconds from the server's close frame to the connection's end."""
        if self.frames.closed_at is None or self.dropped_at is None:
            return None
        return self.dropped_at - self.frames.closed_at


def ws_connect(host: str, port: int, path: str = "/ws", source_ip: str | None = None) -> tuple[socket.socket, bytes]:
    """A raw WebSocket after its 101 (the bytes already read after the head are returned)."""
    sock = open_socket(host, port, source_ip=source_ip, timeout=10)
    key = new_key()
    sock.sendall(request_head("GET", path, {"Host": f"{host}:{port}", **upgrade_headers(key)}))
    head, rest = read_http_head(sock)
    if head.status != 101:
        sock.close()
        raise AssertionError(f"upgrade answered {head.status}")
    assert head.get("Sec-WebSocket-Accept") == accept_for(key)
    return sock, rest


def flood(
    host: str,
    port: int,
    chunk: bytes,
    *,
    source_ip: str | None = None,
    prefix: bytes = b"",
    limit: float = 10.0,
    after_close: bytes = b"",
) -> Flooded:
    """Connect, send `prefix`, then `chunk` again and again, as fast as the server takes it,
    reading whatever comes back, until the server ends the connection (or `limit` s). Once
    the close frame arrived, `after_close` (if given) replaces `chunk`: what a client says
    after the close is what the server must no longer read."""
    sock, rest = ws_connect(host, port, source_ip=source_ip)
    frames = ServerFrames()
    frames.feed(rest)
    sock.setblocking(False)
    pending = memoryview(prefix + chunk)
    sent = 0
    ending = "open"
    dropped_at = None
    texts_at_close = -1
    deadline = time.monotonic() + limit
    try:
        while time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 0.2)
            if readable:
                try:
                    data = sock.recv(1 << 16)
                except ConnectionResetError:
                    ending, dropped_at = "reset", time.monotonic()
                    break
                if not data:
                    ending, dropped_at = "eof", time.monotonic()
                    break
                frames.feed(data)
                if frames.closed_at is not None and texts_at_close < 0:
                    texts_at_close = frames.texts
            if writable:
                if not pending:
                    pending = memoryview(after_close if frames.closed_at is not None and after_close else chunk)
                try:
                    n = sock.send(pending)
                except BlockingIOError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    ending, dropped_at = "reset", time.monotonic()
                    break
                sent += n
                pending = pending[n:]
    finally:
        abort_socket(sock)
    after = frames.texts - texts_at_close if texts_at_close >= 0 else 0
    return Flooded(frames, sent, dropped_at, ending, after)


def client_hello_stalls(host: str, port: int, count: int, source_ip: str | None = None) -> list[socket.socket]:
    """`count` TLS connections that sent the first 6 bytes of a ClientHello and then nothing."""
    start = b"\x16\x03\x01\x02\x00\x01"  # handshake record, TLS 1.0 record version, length, ClientHello
    socks = []
    for _ in range(count):
        sock = open_socket(host, port, source_ip=source_ip, timeout=10)
        sock.sendall(start)
        socks.append(sock)
    return socks


def closed_by_server(socks: list[socket.socket], timeout: float) -> tuple[int, float]:
    """Wait up to `timeout` s for the server to close every socket; (how many it closed, when the
    last one went, in seconds from the call)."""
    start = time.monotonic()
    open_ = {s.fileno(): s for s in socks}
    last = 0.0
    while open_ and time.monotonic() - start < timeout:
        readable, _, _ = select.select(list(open_.values()), [], [], 0.2)
        for sock in readable:
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if not data:
                del open_[sock.fileno()]
                last = time.monotonic() - start
    return len(socks) - len(open_), last
