"""The WebSocket frame channel from the client side (§5 of docs/interface.md; edge/web/websocket.py serves it).

`RawWebSocket` is a minimal RFC 6455 client on a raw socket: the tests need to set SO_RCVBUF,
stop reading at will (slow readers), vanish mid-frame (churn) and see every frame as sent, which
the `websockets` library hides (it buffers and answers pings on its own). The handshake and the
client's frame masking are functions of their own because the soak's clients build the same
bytes. `connect_ws` is the library client with the suite's settings, for tests that want a
well-behaved browser-like peer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import time
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import connect

from tests.support.http import BodyReader, read_http_head, request_head
from tests.support.sockets import StreamEnded, close_socket, open_socket

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


@dataclass
class WsFrame:
    """A binary frame message of §5 of docs/interface.md."""

    seq: int
    timestamp: float
    jpeg: bytes


def parse_ws_frame(payload: bytes) -> WsFrame:
    """Split a binary message into uint64 BE seq, float64 BE timestamp and the JPEG."""
    assert len(payload) > 16, f"binary message too short ({len(payload)} bytes)"
    seq, ts = struct.unpack(">Qd", payload[:16])
    jpeg = payload[16:]
    assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9", "payload is not a complete JPEG"
    return WsFrame(seq, ts, jpeg)


# --------------------------------------------------------------------------------------------
# Handshake and client frames (RFC 6455 §4.1, §5.3)
# --------------------------------------------------------------------------------------------


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def accept_for(key: str) -> str:
    """The `Sec-WebSocket-Accept` value a server must answer to `key`."""
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def upgrade_headers(key: str) -> dict[str, str]:
    """The header fields that ask for a WebSocket upgrade with `key`."""
    return {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
    }


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack(">BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack(">BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack(">BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload))


def connect_ws(url: str, **kwargs: Any) -> Any:
    """The `websockets` client without compression or proxy, with bounded timeouts (an `async with`)."""
    options: dict[str, Any] = {
        "compression": None,
        "proxy": None,
        "open_timeout": 10,
        "close_timeout": 5,
        "max_size": None,
    }
    return connect(url, **{**options, **kwargs})


# --------------------------------------------------------------------------------------------
# The raw client
# --------------------------------------------------------------------------------------------


class RawWebSocket:
    """Minimal RFC 6455 client on a raw socket; the upgrade must succeed (101)."""

    OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG

    def __init__(
        self,
        host: str,
        port: int,
        path: str = "/ws",
        *,
        rcvbuf: int | None = None,
        timeout: float = 10.0,
        source_ip: str | None = None,
    ) -> None:
        self.sock = open_socket(host, port, rcvbuf=rcvbuf, timeout=timeout, source_ip=source_ip)
        self.local_port = int(self.sock.getsockname()[1])  # kept: still needed after close()
        key = new_key()
        self.sock.sendall(request_head("GET", path, {"Host": f"{host}:{port}", **upgrade_headers(key)}))
        head, rest = read_http_head(self.sock)
        self.head = head
        if head.status != 101:
            raise AssertionError(f"WebSocket upgrade answered {head.status} {head.reason}")
        assert head.get("Sec-WebSocket-Accept") == accept_for(key), "bad Sec-WebSocket-Accept"
        self.reader = BodyReader(self.sock, rest, chunked=False)
        self.close_code: int | None = None

    def recv_frame(self) -> tuple[bool, int, bytes]:
        """One wire frame: (fin, opcode, payload). Server frames must be unmasked."""
        b0, b1 = self.reader.read_exact(2)
        assert not b1 & 0x80, "server frames must not be masked"
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack(">H", self.reader.read_exact(2))
        elif n == 127:
            (n,) = struct.unpack(">Q", self.reader.read_exact(8))
        return bool(b0 & 0x80), b0 & 0x0F, self.reader.read_exact(n)

    def recv_message(self) -> tuple[int, bytes]:
        """Next data message (text/binary) or close, reassembling fragments, skipping ping/pong."""
        opcode = -1
        parts: list[bytes] = []
        while True:
            fin, op, payload = self.recv_frame()
            if op in (OP_PING, OP_PONG):
                continue
            if op == OP_CLOSE:
                self.close_code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
                return op, payload
            if op != OP_CONT:
                opcode = op
            parts.append(payload)
            if fin:
                return opcode, b"".join(parts)

    def recv_json(self) -> dict[str, Any]:
        """The next message, which must be a text message (the hello, a reply)."""
        op, payload = self.recv_message()
        assert op == OP_TEXT, f"expected a text message, got opcode {op}"
        return json.loads(payload)

    def recv_text(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next text message, skipping frames; fails on a close or after `timeout` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            op, payload = self.recv_message()
            if op == OP_CLOSE:
                raise AssertionError(f"the server closed the WebSocket ({self.close_code})")
            if op == OP_TEXT:
                return json.loads(payload)
        raise AssertionError("no text message")

    def recv_close(self, timeout: float = 5.0) -> int | None:
        """Read messages until the server's close frame; its code."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            op, _ = self.recv_message()
            if op == OP_CLOSE:
                return self.close_code
        raise AssertionError("no close frame")

    def recv_binary(self) -> WsFrame:
        """Next binary frame message, skipping text messages."""
        while True:
            op, payload = self.recv_message()
            if op == OP_CLOSE:
                raise StreamEnded(f"WebSocket closed with code {self.close_code}")
            if op == OP_BINARY:
                return parse_ws_frame(payload)

    def send(self, opcode: int, payload: bytes) -> None:
        self.sock.sendall(client_frame(opcode, payload))

    def send_text(self, text: str) -> None:
        self.send(OP_TEXT, text.encode())

    def close(self, rst: bool = False) -> None:
        close_socket(self.sock, rst)
