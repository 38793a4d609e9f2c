"""A fake network camera: MJPEG over HTTP on 127.0.0.1 that fails and recovers on command.

It serves ``GET /stream.mjpg`` as ``multipart/x-mixed-replace`` in the layout mjpg-streamer and
most IP cameras use (``--boundary``, part headers, JPEG, CRLF), HTTP/1.0 with a close-delimited
body, cycling through a few pre-encoded JPEGs at the camera rate on a fixed time grid.  An outage
drops every connection (RST, like a camera whose streaming process crashed) and closes the listening
socket, so reconnects are refused until it comes back on the same port.

It runs on its own asyncio loop in a thread of the test process; the public methods are called
from the test's thread and block for at most a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from array import array
from collections.abc import Coroutine
from typing import Any, TypeVar

import cv2
import numpy as np

HOST = "127.0.0.1"
BOUNDARY = b"soakupstream"
MAX_BACKLOG = 512 * 1024  # skip a frame for a reader that has this much unsent (bounded memory)
REQUEST_HEAD_LIMIT = 8192
T = TypeVar("T")


def make_frames(width: int, height: int, count: int = 8, quality: int = 85) -> list[bytes]:
    """``count`` distinct JPEGs: a colour wave, mild noise and a number.

    The noise keeps a re-encoded frame around 14 KB at 320x240, three times the NO SIGNAL
    placeholder (~4.4 KB), so the two are told apart by size alone; all frames get the same amount
    of noise, so their sizes are within a few per cent of each other.
    """
    rng = np.random.default_rng(20261126)
    x = np.linspace(0.0, 1.0, width)[None, :, None]
    y = np.linspace(0.0, 1.0, height)[:, None, None]
    frames = []
    for i in range(count):
        wave = 0.5 + 0.5 * np.sin(2 * np.pi * (x * (1 + 0.3 * i) + y))
        img = np.array([40.0, 90.0, 160.0]) * wave + 40.0 + rng.normal(0.0, 6.0, (height, width, 3))
        img = np.clip(img, 0, 255).astype(np.uint8)
        scale = max(width / 320, 0.5)
        cv2.putText(
            img, f"SOAK {i}", (int(20 * scale), height // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.5 * scale, (255, 255, 255), 3
        )
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        frames.append(buf.tobytes())
    return frames


class _Conn(asyncio.Protocol):
    def __init__(self, upstream: FakeUpstream) -> None:
        self.up = upstream
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()
        self.streaming = False
        self.skipped = 0
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.up.connections_total += 1
        self.up.conns.add(self)
        self._timer = asyncio.get_running_loop().call_later(5.0, self._head_timeout)

    def _head_timeout(self) -> None:
        if not self.streaming and self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.streaming or self.transport is None:
            return  # a reader may send more; nothing here needs it
        self.head += data
        if b"\r\n\r\n" not in self.head:
            if len(self.head) > REQUEST_HEAD_LIMIT:
                self.transport.abort()
            return
        line = bytes(self.head.split(b"\r\n", 1)[0])
        parts = line.split(b" ")
        if len(parts) < 2 or parts[0] != b"GET" or parts[1].split(b"?", 1)[0] != b"/stream.mjpg":
            self.transport.write(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.transport.close()
            return
        self.transport.write(
            b"HTTP/1.0 200 OK\r\nServer: soak-upstream\r\nConnection: close\r\nCache-Control: no-cache\r\n"
            b"Content-Type: multipart/x-mixed-replace; boundary=" + BOUNDARY + b"\r\n\r\n"
        )
        self.streaming = True
        self.up.streams_total += 1

    def send(self, part: bytes) -> None:
        if not self.streaming or self.transport is None or self.transport.is_closing():
            return
        if self.transport.get_write_buffer_size() > MAX_BACKLOG:
            self.skipped += 1
            return
        self.transport.write(part)
        self.up.frames_sent += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.up.conns.discard(self)
        self.transport = None


class FakeUpstream:
    """The fake camera; ``start()`` returns its port."""

    def __init__(self, fps: float, frames: list[bytes], host: str = HOST) -> None:
        self.fps = fps
        self.host = host
        self.port = 0
        self.parts = [
            b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(f) + f + b"\r\n"
            for f in frames
        ]
        self.conns: set[_Conn] = set()
        self.connections_total = 0
        self.streams_total = 0
        self.frames_sent = 0
        self.ticks = array("d")  # wall time of every frame tick while up
        self.late_ticks = 0  # ticks that came more than a period late (the loop was starved)
        self.outages: list[tuple[float, float]] = []  # (down_at, up_at) wall times; up_at nan while down
        self.rebind_retries = 0
        self.up = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="soak-upstream", daemon=True)
        self._server: asyncio.Server | None = None
        self._pacer: asyncio.Task[None] | None = None
        self._schedule: asyncio.Task[None] | None = None

    # -- called from the test thread ----------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> int:
        self._thread.start()
        self._call(self._start())
        return self.port

    def go_down(self) -> None:
        self._call(self._go_down())

    def come_up(self) -> None:
        self._call(self._come_up())

    def schedule_outages(self, starts: list[float], down_for: float) -> None:
        """Go down at each wall time in ``starts`` for ``down_for`` seconds."""
        self._call(self._set_schedule(starts, down_for))

    def cancel_outages(self) -> None:
        """Stop the schedule and make sure the camera is up."""
        self._call(self._cancel_schedule())

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._call(self._shutdown(), timeout=5.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        if not self._thread.is_alive():
            self._loop.close()

    # -- on the upstream's loop --------------------------------------------------------------------

    async def _start(self) -> None:
        await self._listen()
        self._pacer = asyncio.create_task(self._pace())

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while True:
            try:
                self._server = await loop.create_server(
                    lambda: _Conn(self), self.host, self.port, reuse_address=True, backlog=16
                )
                break
            except OSError:
                # the port was taken while down (unlikely on loopback); try again, briefly
                self.rebind_retries += 1
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.2)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.up = True

    async def _go_down(self, record: bool = True) -> None:
        if not self.up:
            return
        self.up = False
        if record:
            self.outages.append((time.time(), float("nan")))
        if self._server is not None:
            self._server.close()  # stop listening: connection attempts are refused from now on
        for conn in list(self.conns):
            if conn.transport is not None:
                conn.transport.abort()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def _come_up(self) -> None:
        if self.up:
            return
        await self._listen()
        down_at, _ = self.outages[-1]
        self.outages[-1] = (down_at, time.time())

    async def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.fps
        next_at = loop.time()
        n = 0
        while True:
            now = loop.time()
            if next_at < now - period:
                self.late_ticks += 1
                next_at = now
            await asyncio.sleep(max(0.0, next_at - now))
            next_at += period
            if not self.up:
                continue
            part = self.parts[n % len(self.parts)]
            n += 1
            self.ticks.append(time.time())
            for conn in list(self.conns):
                conn.send(part)

    async def _set_schedule(self, starts: list[float], down_for: float) -> None:
        await self._cancel_schedule()
        self._schedule = asyncio.create_task(self._run_schedule(starts, down_for))

    async def _run_schedule(self, starts: list[float], down_for: float) -> None:
        for start in starts:
            await asyncio.sleep(max(0.0, start - time.time()))
            await self._go_down()
            await asyncio.sleep(down_for)
            await self._come_up()

    async def _cancel_schedule(self) -> None:
        if self._schedule is not None:
            self._schedule.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._schedule
            self._schedule = None
        await self._come_up()

    async def _shutdown(self) -> None:
        if self._schedule is not None:
            self._schedule.cancel()
        if self._pacer is not None:
            self._pacer.cancel()
        await self._go_down(record=False)
