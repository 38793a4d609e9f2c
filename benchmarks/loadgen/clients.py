"""The three kinds of load client: fast MJPEG, throttled MJPEG and WebSocket.

Each client owns a :class:`FrameStats` that records, per complete frame, the arrival time and
the lag behind the frame's capture timestamp. Arrival is ``time.time()`` because the server's
timestamps are wall-clock (§4 and §5 of docs/interface.md) and both processes share this machine's clock.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import struct
import time
from array import array
from typing import Any, cast

from websockets.asyncio.client import connect as ws_connect

from loadgen.proto import JPEG_EOI, JPEG_SOI, ResponseHead
from tests.support.multipart import Part
from tests.support.response import MjpegResponse

WS_PREFIX = struct.Struct(">Qd")


class FrameStats:
    """Per-client record. Kept flat (``__slots__``, ``array``) because it is hit per frame."""

    __slots__ = (
        "arrivals",
        "bad_jpeg",
        "bytes",
        "connect_at",
        "ended_at",
        "errors",
        "failure",
        "first_frame_at",
        "frames",
        "info",
        "kind",
        "lags",
        "last_seq",
        "last_ts",
        "max_boundary_wait",
        "repeats",
        "request_at",
        "skipped",
        "status",
    )

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.arrivals = array("d")
        self.lags = array("d")
        self.frames = 0
        self.bad_jpeg = 0
        self.repeats = 0
        self.skipped = 0
        self.errors: dict[str, int] = {}
        self.connect_at = math.nan
        self.request_at = math.nan
        self.first_frame_at = math.nan
        self.ended_at = math.nan
        self.status = 0
        self.failure: str | None = None
        self.bytes = 0
        self.last_ts = -math.inf
        self.last_seq = -1
        self.max_boundary_wait = 0.0
        self.info: dict[str, Any] = {}

    def on_frame(self, now: float, ts: float, jpeg_ok: bool, boundary_wait: float = 0.0) -> None:
        """Record one complete frame; a non-increasing timestamp means a repeated frame."""
        if boundary_wait > self.max_boundary_wait:
            self.max_boundary_wait = boundary_wait
        if self.frames == 0:
            self.first_frame_at = now
        self.frames += 1
        self.arrivals.append(now)
        self.lags.append(now - ts)
        if not jpeg_ok:
            self.bad_jpeg += 1
        if ts <= self.last_ts:
            self.repeats += 1
        self.last_ts = ts

    def on_error(self, reason: str) -> None:
        """Count a protocol problem by reason; these are rare so a dict is fine."""
        self.errors[reason] = self.errors.get(reason, 0) + 1

    def fail(self, reason: str) -> None:
        """Mark the client as failed (it will count as 0 fps)."""
        if self.failure is None:
            self.failure = reason
        self.ended_at = time.time()


class StreamReceiver:
    """One MJPEG response through the test suite's parser (`tests.support.response.MjpegResponse`,
    resyncing after a framing error so one broken part costs one frame), recorded in `stats`."""

    def __init__(self, stats: FrameStats) -> None:
        self.stats = stats
        self._response = MjpegResponse(self, resync=True)

    @property
    def done(self) -> bool:
        """True when the stream ended or failed, so the connection can be dropped."""
        return self.stats.failure is not None or self._response.done

    def feed(self, buf: bytearray, start: int, end: int, now: float) -> None:
        """Consume a received range. Until the head is in; then the body's own ``feed`` replaces
        this one, so the per-read path is a single call into the parser."""
        response = self._response
        response.feed(buf, start, end, now)
        if not response.head_done:
            if response.failed is not None:
                self.stats.fail(response.failed)
            return
        self.stats.status = response.status
        if response.body is None:
            self.stats.fail(response.failed or "no body")
            return
        problems = ResponseHead(response.status, response.headers).head_problems()
        if problems:
            self.stats.info["head_problems"] = problems
        self.stats.info["chunked"] = response.chunked
        self.feed = response.body.feed  # type: ignore[method-assign]  # the hot path from now on

    # -- tests.support.multipart.PartSink -------------------------------------------------------

    def want_jpeg(self) -> bool:
        return False

    def on_part(self, part: Part) -> None:
        self.stats.on_frame(part.jpeg_end, part.timestamp, part.jpeg_ok, part.at - part.jpeg_end)
        if part.problem is not None and part.jpeg_ok:
            self.on_error(part.problem)

    def on_error(self, reason: str) -> None:
        self.stats.on_error(reason)


class MjpegProtocol(asyncio.BufferedProtocol):
    """A fast (always reading) MJPEG client.

    ``BufferedProtocol`` lets the event loop ``recv_into`` a buffer we provide, so there is no
    per-read ``bytes`` allocation. All fast clients of a worker share one buffer: the loop
    calls ``get_buffer`` and ``buffer_updated`` back to back and the parsers keep no
    reference to it, and one 256 KiB buffer stays in cache where 500 would not.
    """

    def __init__(self, request: bytes, stats: FrameStats, buf: bytearray) -> None:
        self._request = request
        self._stats = stats
        self._buf = buf
        self._receiver = StreamReceiver(stats)
        self._transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the request right away; first-frame time starts here."""
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check here.
        self._transport = cast(asyncio.Transport, transport)
        self._stats.connect_at = time.time()
        transport.write(self._request)
        self._stats.request_at = time.time()

    def get_buffer(self, sizehint: int) -> bytearray:
        """Hand out the worker's shared receive buffer."""
        return self._buf

    def buffer_updated(self, nbytes: int) -> None:
        """Parse what just arrived; drop the connection if the stream is over or broken."""
        self._stats.bytes += nbytes
        self._receiver.feed(self._buf, 0, nbytes, time.time())
        if self._receiver.done and self._transport is not None:
            self._transport.close()

    def eof_received(self) -> bool:
        """The server ended the stream; note when, so early ends are visible in results."""
        self._stats.ended_at = time.time()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """Record resets; resolve ``closed`` so the worker can wait for a clean shutdown."""
        if exc is not None:
            self._stats.on_error(f"connection lost: {type(exc).__name__}")
        if math.isnan(self._stats.ended_at):
            self._stats.ended_at = time.time()
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        """Close from our side (end of run)."""
        if self._transport is not None:
            self._transport.close()


async def open_fast(host: str, port: int, request: bytes, stats: FrameStats, buf: bytearray) -> MjpegProtocol | None:
    """Connect one fast MJPEG client; a refused or timed-out connect marks it failed."""
    loop = asyncio.get_running_loop()
    try:
        _, proto = await asyncio.wait_for(
            loop.create_connection(lambda: MjpegProtocol(request, stats, buf), host, port),
            timeout=15.0,
        )
    except (OSError, TimeoutError) as exc:
        stats.fail(f"connect: {type(exc).__name__}: {exc}")
        return None
    return proto


async def run_throttled(
    host: str,
    port: int,
    request: bytes,
    stats: FrameStats,
    *,
    rcvbuf: int,
    read_size: int,
    interval: float,
    phase: float,
    deadline: float,
) -> None:
    """A slow reader: small kernel receive buffer, one ``read_size`` read per ``interval``.

    ``phase`` (0 ≤ phase < interval) shifts this reader's read ticks, so that several slow
    readers do not read in lockstep and their ages sample the 0.5 s tick at different points.

    ``SO_RCVBUF`` must be set before ``connect`` so the TCP window is negotiated small; Linux
    doubles the value, and the effective size is recorded. Runs until cancelled or
    ``deadline`` (monotonic), whichever comes first.
    """
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        stats.info["rcvbuf_effective"] = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        sock.setblocking(False)
        await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout=15.0)
        stats.connect_at = time.time()
        await loop.sock_sendall(sock, request)
        stats.request_at = time.time()
        await asyncio.sleep(phase)
        await _throttled_reads(sock, StreamReceiver(stats), read_size, interval, deadline)
    except (OSError, TimeoutError) as exc:
        stats.fail(f"{type(exc).__name__}: {exc}")
    finally:
        sock.close()


async def _throttled_reads(
    sock: socket.socket, receiver: StreamReceiver, read_size: int, interval: float, deadline: float
) -> None:
    """Read at most ``read_size`` bytes per tick on a fixed schedule (no drift) until deadline."""
    loop = asyncio.get_running_loop()
    buf = bytearray(read_size)
    next_tick = time.monotonic()
    try:
        async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
            while True:
                n = await loop.sock_recv_into(sock, buf)
                if n == 0:
                    receiver.stats.ended_at = time.time()
                    return
                receiver.stats.bytes += n
                receiver.feed(buf, 0, n, time.time())
                if receiver.done:
                    return
                next_tick += interval
                await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
    except TimeoutError:
        return  # the deadline is the normal end of a run


async def run_ws(uri: str, stats: FrameStats, *, compression: str | None, deadline: float) -> None:
    """A WebSocket client: checks the hello, then records every binary frame (§5 of docs/interface.md).

    ``compression="deflate"`` offers permessage-deflate like browsers do, so the run shows
    whether the server (needlessly) compresses JPEG; the negotiated extension is recorded.
    """
    try:
        # The upgrade request goes out right after the TCP connect: first-frame time starts here.
        stats.connect_at = stats.request_at = time.time()
        async with ws_connect(
            uri,
            compression=compression,
            max_size=2**24,
            ping_interval=None,
            open_timeout=15.0,
            close_timeout=2.0,
        ) as ws:
            stats.info["handshake_ms"] = round((time.time() - stats.connect_at) * 1000.0, 2)
            stats.status = ws.response.status_code if ws.response else 0
            if ws.response is not None:
                stats.info["extensions"] = ws.response.headers.get("Sec-WebSocket-Extensions", "none")
            _check_hello(await asyncio.wait_for(ws.recv(), timeout=15.0), stats)
            # One timeout for the whole loop: a wait_for per message would cost a task each.
            async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                async for message in ws:
                    _on_ws_message(message, time.time(), stats)
            stats.ended_at = time.time()
    except TimeoutError:
        if time.monotonic() < deadline - 0.5:  # reaching the deadline is the normal end
            stats.fail("timeout waiting for the hello or a frame")
    except Exception as exc:
        stats.fail(f"{type(exc).__name__}: {exc}")


def _check_hello(message: str | bytes, stats: FrameStats) -> None:
    """The first message must be the JSON hello; anything else is recorded as an error."""
    try:
        hello = json.loads(message) if isinstance(message, str) else None
    except ValueError:
        hello = None
    if not isinstance(hello, dict) or hello.get("type") != "hello":
        stats.on_error("first message is not a JSON hello")
        return
    stats.info["hello"] = {k: hello.get(k) for k in ("camera", "width", "height", "fps")}


def _on_ws_message(message: str | bytes, now: float, stats: FrameStats) -> None:
    """Decode the 16-byte prefix, check the JPEG markers, and count sequence gaps."""
    if isinstance(message, str):
        stats.on_error("unexpected text message")
        return
    if len(message) < WS_PREFIX.size + 4:
        stats.on_error("binary message too short")
        return
    seq, ts = WS_PREFIX.unpack_from(message)
    ok = message[16:18] == JPEG_SOI and message[-2:] == JPEG_EOI
    if stats.last_seq >= 0:
        if seq <= stats.last_seq:
            stats.on_error("sequence number not increasing")
        else:
            stats.skipped += seq - stats.last_seq - 1
    stats.last_seq = seq
    stats.bytes += len(message)
    stats.on_frame(now, ts, ok)
