"""The soak's readers, the clients the frame-rate assertion is about.

- fast MJPEG / WebSocket readers: `asyncio.BufferedProtocol`s sharing one receive buffer (the
  event loop reads straight into it, no per-read allocation); they stay connected for the whole
  run, and reconnect (counted) if dropped;
- slow readers: a 4 KiB kernel receive buffer and one 4 KiB read every 0.5 s (8 KB/s).
"""

from __future__ import annotations

import asyncio
import time
from typing import cast

from tests.soak.context import (
    CONNECT_TIMEOUT,
    RECONNECT_PAUSE,
    STALL_LIMIT,
    ClientStats,
    Ctx,
    close_socket,
    connect_or_pause,
    exc_name,
    new_reader,
    pause,
)
from tests.soak.proto import MjpegReader, WsReader

# Slow reader: 4 KiB every 0.5 s = 8 KB/s, a bad mobile link; the kernel buffer is kept small so the
# server, not the kernel, has to deal with the backlog.
SLOW_READ = 4096
SLOW_INTERVAL = 0.5
SLOW_RCVBUF = 4096


class _FastProtocol(asyncio.BufferedProtocol):
    """Reads everything as it comes, into the worker's shared buffer (the loop calls
    ``get_buffer`` and ``buffer_updated`` back to back, and the parsers keep no reference)."""

    def __init__(self, request: bytes, reader: MjpegReader | WsReader, buf: bytearray) -> None:
        self._request = request
        self.reader = reader
        self._buf = buf
        self.transport: asyncio.Transport | None = None
        self.last_rx = time.monotonic()
        self.lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self._request)

    def get_buffer(self, sizehint: int) -> bytearray:
        return self._buf

    def buffer_updated(self, nbytes: int) -> None:
        self.last_rx = time.monotonic()
        self.reader.feed(self._buf, 0, nbytes, time.time())
        if (self.reader.failed or self.reader.ended) and self.transport is not None:
            self.transport.close()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            reason = self.reader.failed or (
                f"connection lost: {exc_name(exc)}" if exc else "server closed the connection"
            )
            if isinstance(self.reader, WsReader) and self.reader.close_code is not None:
                reason = f"server sent close {self.reader.close_code}"
            self.lost.set_result(reason)


async def run_fast(ctx: Ctx, stats: ClientStats, ws: bool, http10: bool = False) -> None:
    """Stay connected and read everything until the deadline; reconnect (and count it) if dropped."""
    loop = asyncio.get_running_loop()
    while ctx.remaining() > 1.0:
        request, reader = new_reader(ctx, stats, ws, http10)
        proto = _FastProtocol(request, reader, ctx.shared_buf)
        try:
            await asyncio.wait_for(loop.create_connection(lambda p=proto: p, ctx.host, ctx.port), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            stats.ended_early(f"connect failed: {exc_name(exc)}")
            await pause(ctx, RECONNECT_PAUSE)
            continue
        stats.connects += 1
        reason = await _watch(ctx, proto)
        if reason is None:
            return
        stats.ended_early(reason)
        await pause(ctx, RECONNECT_PAUSE)


async def _watch(ctx: Ctx, proto: _FastProtocol) -> str | None:
    """Wait for the connection to end (its reason), a stall (abort), or the deadline (None)."""
    while True:
        remaining = ctx.remaining()
        if remaining <= 0:
            if proto.transport is not None:
                proto.transport.close()
            return None
        done, _ = await asyncio.wait([proto.lost], timeout=min(1.0, remaining))
        if done:
            return proto.lost.result()
        silent = time.monotonic() - proto.last_rx
        if silent > STALL_LIMIT and proto.transport is not None:
            proto.transport.abort()
            return f"no data for {silent:.0f} s"


# --------------------------------------------------------------------------------------------
# slow readers
# --------------------------------------------------------------------------------------------


async def run_slow(ctx: Ctx, stats: ClientStats, ws: bool) -> None:
    """8 KB/s through a 4 KiB receive buffer, on a fixed schedule, for the whole run."""
    loop = asyncio.get_running_loop()
    buf = bytearray(SLOW_READ)
    while ctx.remaining() > 1.0:
        request, reader = new_reader(ctx, stats, ws)
        reason: str | None = None
        sock = await connect_or_pause(ctx, stats.ended_early, SLOW_RCVBUF)
        if sock is None:
            continue
        try:
            await asyncio.wait_for(loop.sock_sendall(sock, request), CONNECT_TIMEOUT)
            stats.connects += 1
            next_tick = loop.time()
            while True:
                remaining = ctx.remaining()
                if remaining <= 0:
                    return
                try:
                    n = await asyncio.wait_for(loop.sock_recv_into(sock, buf), min(STALL_LIMIT, remaining))
                except TimeoutError:
                    if ctx.remaining() <= 0:
                        return
                    reason = f"no data for {STALL_LIMIT:.0f} s"
                    break
                if n == 0:
                    reason = reader.failed or "server closed the connection"
                    break
                reader.feed(buf, 0, n, time.time())
                if reader.failed or reader.ended:
                    reason = reader.failed or "stream ended"
                    break
                next_tick += SLOW_INTERVAL
                await asyncio.sleep(max(0.0, min(next_tick - loop.time(), ctx.remaining())))
        except (OSError, TimeoutError) as exc:
            reason = f"{exc_name(exc)}"
        finally:
            close_socket(sock)
        stats.ended_early(reason or "ended")
        await pause(ctx, RECONNECT_PAUSE)
