"""Frames as a viewer receives them, and readers that keep receiving while a test does other things.

`Received` is what the timing tests need of a frame (arrival, capture time, size, picture size),
the same for MJPEG parts and WebSocket messages, so one check serves both protocols.
`BackgroundReader` reads in a thread: a fast viewer that must keep reading while the test stalls
another client, polls the status or stops a server. `read_for` reads in the test's own thread
for a fixed time (a client that has just resumed reading).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.support.jpeg import jpeg_size
from tests.support.mjpeg import MjpegStream
from tests.support.waiting import wait_for
from tests.support.websocket import RawWebSocket


@dataclass
class Received:
    received_at: float
    timestamp: float
    size: int
    width: int = 0
    height: int = 0
    seq: int = -1  # WebSocket sequence number; -1 for MJPEG


def _received(received_at: float, timestamp: float, jpeg: bytes, decode: bool, seq: int = -1) -> Received:
    width, height = jpeg_size(jpeg) if decode else (0, 0)
    return Received(received_at, timestamp, len(jpeg), width, height, seq)


def mjpeg_reader(stream: MjpegStream, decode: bool = False) -> Callable[[], Received]:
    """Reads the next part of `stream` (and decodes it for its size when `decode`)."""

    def read() -> Received:
        part = stream.read_part()
        return _received(part.received_at, part.timestamp, part.jpeg, decode)

    return read


def ws_reader(ws: RawWebSocket, decode: bool = False) -> Callable[[], Received]:
    """Reads the next binary frame message of `ws` (and decodes it for its size when `decode`)."""

    def read() -> Received:
        frame = ws.recv_binary()
        return _received(time.time(), frame.timestamp, frame.jpeg, decode, frame.seq)

    return read


def read_for(read: Callable[[], Received], seconds: float) -> list[Received]:
    """Every frame `read` returns until `seconds` have passed."""
    frames: list[Received] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        frames.append(read())
    return frames


class BackgroundReader:
    """Reads frames from a stream in a thread, recording arrival time, timestamp and size.

    `reader` returns one `Received` per call (`mjpeg_reader`, `ws_reader`).
    """

    def __init__(self, reader: Callable[[], Received], name: str = "reader") -> None:
        self._reader = reader
        self.frames: list[Received] = []
        self.error: BaseException | None = None
        self.ended = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                item = self._reader()
                with self._lock:
                    self.frames.append(item)
        except BaseException as exc:
            if not self._stop.is_set():
                self.error = exc
        finally:
            self.ended.set()

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.frames)

    def count(self) -> int:
        with self._lock:
            return len(self.frames)

    def count_between(self, t0: float, t1: float) -> int:
        return sum(1 for f in self.snapshot() if t0 <= f.received_at < t1)

    def wait_frames(
        self, n: int, timeout: float, message: str, since: float | None = None, interval: float = 0.05
    ) -> None:
        """Wait until `n` frames arrived (at or after wall time `since`, when given), then `check`.

        A reader that failed stops the wait at once: its error is the finding."""

        def enough() -> bool:
            got = self.count() if since is None else self.count_between(since, time.time() + 1)
            return got >= n or self.error is not None

        wait_for(enough, timeout, interval, message)
        self.check()

    def stop(self, closer: Callable[[], None] | None = None, timeout: float = 5.0) -> None:
        """Stop reading; `closer` (e.g. the stream's close) unblocks a pending read first."""
        self._stop.set()
        if closer is not None:
            closer()
        self._thread.join(timeout)

    def check(self) -> None:
        if self.error is not None:
            raise AssertionError(f"background reader failed: {self.error!r}") from self.error
