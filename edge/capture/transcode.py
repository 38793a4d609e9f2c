"""JPEG on demand for an H.264 camera: decode its access units and encode JPEG, once per frame for
every JPEG viewer (``/stream``, ``/snapshot``, the JPEG WebSocket), and only while one is there.

A thread of its own, so the decode and encode never delay the capture thread's hand-over of units
to the H.264 viewers. It starts from the GOP cache (the units since the last key frame), decodes
them all and encodes only the newest picture: a snapshot of an H.264 camera is the current frame,
not the last key frame. When it falls behind it skips to the next key frame rather than queue.
With no JPEG viewer left it stops and frees the decoder: the camera then costs what its
passthrough costs.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence

import av
import numpy as np

from ..fanout.units import AccessUnit

log = logging.getLogger("edge.capture")

#: Units waiting to be decoded beyond which the transcoder gives up on them and waits for the
#: next key frame (about two seconds at 30 fps).
MAX_BACKLOG = 60
IDLE_POLL = 0.5


class Transcoder:
    """Decodes an H.264 camera's units and hands the newest picture to ``publish``."""

    def __init__(self, name: str, publish: Callable[[np.ndarray], None]) -> None:
        self.name = name
        self._publish = publish
        self._lock = threading.Condition()
        self._queue: collections.deque[AccessUnit] = collections.deque()
        self._running = False
        self._need_key = True
        self._thread: threading.Thread | None = None
        self.seconds = 0.0  # decode time (the cost shown in status)
        self.frames_decoded = 0
        self.errors = 0

    @property
    def running(self) -> bool:
        return self._running

    def start(self, gop: Sequence[AccessUnit]) -> None:
        """Begin decoding from ``gop`` (the units since the last key frame), from the capture thread."""
        with self._lock:
            if self._running:
                return
            self._running = True
            self._queue = collections.deque(gop)
            self._need_key = True
            self._thread = threading.Thread(target=self._run, name=f"jpeg-{self.name}", daemon=True)
            self._thread.start()
        log.info("%s: a JPEG viewer arrived; decoding the H.264 stream for it", self.name)

    def stop(self) -> None:
        with self._lock:
            if not self._running:
                return
            self._running = False
            self._queue.clear()
            self._lock.notify()
        log.info("%s: no JPEG viewer left; stopped decoding", self.name)

    def join(self, timeout: float) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout)

    def offer(self, unit: AccessUnit) -> None:
        """A new unit, from the capture thread; never blocks on the decoder."""
        with self._lock:
            if not self._running:
                return
            if len(self._queue) >= MAX_BACKLOG:
                # Too far behind to catch up: start again from the next key frame.
                self._queue.clear()
                self._need_key = True
            self._queue.append(unit)
            self._lock.notify()

    def _next(self) -> tuple[AccessUnit | None, bool]:
        """The next unit to decode (None: stopped), and whether more are already waiting."""
        with self._lock:
            while self._running:
                while self._queue and self._need_key and not self._queue[0].key:
                    self._queue.popleft()
                if self._queue:
                    unit = self._queue.popleft()
                    self._need_key = False
                    return unit, bool(self._queue)
                self._lock.wait(IDLE_POLL)
            return None, False

    def _run(self) -> None:
        decoder: av.VideoCodecContext | None = None
        params = None
        try:
            while True:
                unit, more = self._next()
                if unit is None:
                    return
                if decoder is None or unit.params is not params:
                    decoder = _decoder()
                    params = unit.params
                started = time.perf_counter()
                try:
                    frames = decoder.decode(av.Packet(unit.data))
                except av.FFmpegError as exc:
                    self.errors += 1
                    log.debug("%s: the decoder rejected a unit: %s", self.name, exc)
                    decoder = None
                    with self._lock:
                        self._need_key = True
                    continue
                self.frames_decoded += len(frames)
                image = frames[-1].to_ndarray(format="bgr24") if frames and not more else None
                self.seconds += time.perf_counter() - started
                if image is not None:
                    self._publish(image)
        except Exception:  # a decoder surprise must not take the process down; JPEG viewers see no new frame
            log.exception("%s: decoding for JPEG viewers failed", self.name)
        finally:
            with self._lock:
                self._running = False


def _decoder() -> av.VideoCodecContext:
    ctx = av.CodecContext.create("h264", "r")
    assert isinstance(ctx, av.VideoCodecContext)
    ctx.flags |= av.codec.context.Flags.low_delay  # a picture out for each unit in, no reorder wait
    ctx.thread_count = 1
    return ctx
