"""The soak's abusive clients, each from a loopback address of its own:

- garbage: random bytes, a 200 KB header line, 500 headers, and, on the WebSocket, invalid JSON,
  an unknown message type, a binary message and a text message that is not UTF-8; what the
  server answered is recorded;
- idle: connect and send nothing (one in four sends half a request head), and wait for the
  server to close the connection (`request_timeout`).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.soak.context import (
    CONNECT_TIMEOUT,
    ClientStats,
    Ctx,
    close_socket,
    connect,
    connect_or_pause,
    exc_name,
    pause,
)
from tests.soak.proto import HEAD_END, WsReader, ws_handshake
from tests.support.http import status_code
from tests.support.websocket import OP_BINARY, OP_CLOSE, OP_TEXT, client_frame

GARBAGE_PAUSE = (0.3, 1.0)
GARBAGE_TIMEOUT = 15.0
IDLE_PAUSE = 0.2
GARBAGE_KINDS = (
    "random_bytes",
    "huge_header_line",
    "many_headers",
    "ws_bad_json",
    "ws_unknown_type",
    "ws_binary",
    "ws_bad_utf8",
)


def _garbage_http(ctx: Ctx, kind: str) -> bytes:
    host = f"{ctx.host}:{ctx.port}"
    if kind == "random_bytes":
        return b"\x00" + os.urandom(ctx.rng.randint(64, 4096))
    if kind == "huge_header_line":  # one 200 KB header line (§7 of docs/interface.md: over 64 KiB -> 431/400)
        return f"GET /stream HTTP/1.1\r\nHost: {host}\r\nX-Big: ".encode() + b"a" * 200_000 + b"\r\n\r\n"
    if kind == "many_headers":  # 500 header fields (§7 of docs/interface.md: over 100 -> 431/400)
        fields = "".join(f"X-Filler-{i}: {i}\r\n" for i in range(500))
        return f"GET /stream HTTP/1.1\r\nHost: {host}\r\n{fields}\r\n".encode()
    raise ValueError(kind)


async def _http_garbage(ctx: Ctx, stats: ClientStats, kind: str) -> str:
    """Send a bad request head; what did the server do about it?"""
    loop = asyncio.get_running_loop()
    sock = await connect(ctx, source=stats.address)
    try:
        sent_all = True
        try:
            await asyncio.wait_for(loop.sock_sendall(sock, _garbage_http(ctx, kind)), CONNECT_TIMEOUT)
        except (BrokenPipeError, ConnectionResetError):
            sent_all = False  # the server may have answered and closed before reading it all
        except TimeoutError:
            return "send blocked (not read, not closed)"
        head = bytearray()
        buf = bytearray(65536)
        try:
            async with asyncio.timeout(ctx.request_timeout + ctx.idle_grace):
                while HEAD_END not in head and len(head) < 65536:
                    n = await loop.sock_recv_into(sock, buf)
                    if n == 0:
                        break
                    head += buf[:n]
        except TimeoutError:
            return "no answer"
        except ConnectionResetError:
            if not head:
                return "reset" + ("" if sent_all else " while sending")
        status = status_code(head)
        if not head:
            return "closed, no answer"
        if not status:
            return "non-HTTP answer"
        if status == 200:
            return "200 (accepted!)"
        # §7 of docs/interface.md wants the connection closed after refusing a head.
        try:
            async with asyncio.timeout(3.0):
                while await loop.sock_recv_into(sock, buf):
                    pass
            return f"{status}+close"
        except TimeoutError:
            return f"{status}, left open"
        except ConnectionResetError:
            return f"{status}+reset"
    finally:
        close_socket(sock)


class _TextSink:
    """Wraps a client's stats to also hand text messages / close codes to the garbage logic."""

    def __init__(self, stats: ClientStats) -> None:
        self.stats = stats
        self.texts: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.closed = False

    def want_jpeg(self) -> bool:
        return self.stats.want_jpeg()

    def on_frame(self, now: float, ts: float, seq: int, size: int, problem: str | None, jpeg: bytes | None) -> None:
        self.stats.on_frame(now, ts, seq, size, problem, jpeg)

    def on_text(self, now: float, payload: bytes) -> None:
        try:
            msg = json.loads(payload)
        except ValueError:
            msg = {"type": "?", "raw": payload[:80].decode("latin-1")}
        self.texts.append(msg if isinstance(msg, dict) else {"type": "?"})

    def on_close(self, code: int | None) -> None:
        self.close_code = code
        self.closed = True


async def _read_ws_until(
    sock: socket.socket, reader: WsReader, buf: bytearray, done: Callable[[], bool], timeout: float
) -> str | None:
    """Feed ``reader`` until ``done()``; None on success, else why it stopped."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            while not done():
                n = await loop.sock_recv_into(sock, buf)
                if n == 0:
                    return "closed without a close frame"
                reader.feed(buf, 0, n, time.time())
                if reader.failed:
                    return reader.failed
    except TimeoutError:
        return "no answer"
    except ConnectionResetError:
        return "reset"
    return None


async def _ws_garbage(ctx: Ctx, stats: ClientStats, kind: str) -> str:
    """Open the frame channel, send one bad message, and record how the server answered."""
    loop = asyncio.get_running_loop()
    sink = _TextSink(stats)
    request, accept = ws_handshake(ctx.host, ctx.port, ctx.path("/ws"))
    reader = WsReader(sink, accept)
    buf = bytearray(65536)
    sock = await connect(ctx, source=stats.address)
    try:
        await asyncio.wait_for(loop.sock_sendall(sock, request), CONNECT_TIMEOUT)
        why = await _read_ws_until(sock, reader, buf, lambda: bool(sink.texts) or sink.closed, 10.0)
        if why or not sink.texts or sink.texts[0].get("type") != "hello":
            return f"no hello ({why or sink.close_code})"
        message = {
            "ws_bad_json": client_frame(OP_TEXT, b"{not json"),
            "ws_unknown_type": client_frame(OP_TEXT, b'{"type": "nope"}'),
            "ws_binary": client_frame(OP_BINARY, os.urandom(32)),
            "ws_bad_utf8": client_frame(OP_TEXT, b"\xff\xfe\xfd not utf-8"),
        }[kind]
        await asyncio.wait_for(loop.sock_sendall(sock, message), CONNECT_TIMEOUT)
        why = await _read_ws_until(sock, reader, buf, lambda: len(sink.texts) > 1 or sink.closed, 10.0)
        if why:
            return why
        if sink.closed:
            await _answer_close(sock, sink.close_code)
            return f"close {sink.close_code}"
        answer = sink.texts[1].get("type")
        # The connection must still work: say goodbye properly and expect the close echo.
        await asyncio.wait_for(loop.sock_sendall(sock, client_frame(OP_CLOSE, struct.pack(">H", 1000))), 5.0)
        why = await _read_ws_until(sock, reader, buf, lambda: sink.closed, 5.0)
        return f"{answer} msg+{'close ' + str(sink.close_code) if not why else why}"
    finally:
        close_socket(sock)


async def _answer_close(sock: socket.socket, code: int | None) -> None:
    loop = asyncio.get_running_loop()
    payload = struct.pack(">H", code) if code else b""
    try:
        await asyncio.wait_for(loop.sock_sendall(sock, client_frame(OP_CLOSE, payload)), 2.0)
    except (OSError, TimeoutError):
        pass


async def run_garbage(ctx: Ctx, stats: ClientStats) -> None:
    """Cycle through the garbage kinds (each client starts at a different one)."""
    n = stats.idx
    while ctx.remaining() > 1.0:
        kind = GARBAGE_KINDS[n % len(GARBAGE_KINDS)]
        n += 1
        job: Awaitable[str] = (
            _ws_garbage(ctx, stats, kind) if kind.startswith("ws_") else _http_garbage(ctx, stats, kind)
        )
        try:
            async with asyncio.timeout(min(GARBAGE_TIMEOUT, max(0.01, ctx.remaining()))):
                stats.connects += 1
                result = await job
            stats.outcome(f"{kind}: {result}")
        except TimeoutError:
            if ctx.remaining() > 0:
                stats.outcome(f"{kind}: timeout")
        except OSError as exc:
            stats.outcome(f"{kind}: {exc_name(exc)}")
        await pause(ctx, ctx.rng.uniform(*GARBAGE_PAUSE))


async def run_idle(ctx: Ctx, stats: ClientStats) -> None:
    """Connect and send nothing (or half a request head); wait for the server to close it."""
    loop = asyncio.get_running_loop()
    partial = stats.idx % 4 == 3
    label = "half a head" if partial else "nothing"
    buf = bytearray(4096)
    limit = ctx.request_timeout + ctx.idle_grace
    while ctx.remaining() > limit:  # only waits that can run to completion are recorded
        sock = await connect_or_pause(ctx, stats.outcome, source=stats.address)
        if sock is None:
            continue
        stats.connects += 1
        started = loop.time()
        try:
            if partial:
                await asyncio.wait_for(
                    loop.sock_sendall(sock, f"GET /stream HTTP/1.1\r\nHost: {ctx.host}:{ctx.port}\r\n".encode()),
                    CONNECT_TIMEOUT,
                )
            try:
                n = await asyncio.wait_for(loop.sock_recv_into(sock, buf), limit)
            except TimeoutError:
                stats.outcome(f"sent {label}: still open after {limit:.0f} s")
                continue
            stats.idle_latencies.append(loop.time() - started)
            if n == 0:
                stats.outcome(f"sent {label}: closed by server")
            else:
                status = status_code(buf[:n])
                stats.outcome(f"sent {label}: answered HTTP {status}" if status else f"sent {label}: got bytes")
        except ConnectionResetError:
            stats.idle_latencies.append(loop.time() - started)
            stats.outcome(f"sent {label}: reset by server")
        except OSError as exc:
            stats.outcome(f"sent {label}: {exc_name(exc)}")
        finally:
            close_socket(sock)
        await pause(ctx, IDLE_PAUSE)
