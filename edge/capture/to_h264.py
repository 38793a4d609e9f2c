"""H.264 for a JPEG camera that publishes (§10 of docs/interface.md): its JPEG frames decoded and
encoded once for all its publish targets, and only while one of them wants the stream.

A thread of its own with a latest-frame hand-over: the capture thread offers each frame and
moves on, so the local JPEG viewers never wait on the encoder; an encoder that cannot keep up
encodes fewer pictures (the stream's timestamps say when each was captured) rather than queue
stale ones. With no target connected the thread stops and frees the encoder.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from ..fanout.units import AccessUnit, UnitFeed
from ..formats.h264 import AccessUnitChecker, H264Error
from .encoder import EncoderError, H264Encoder

log = logging.getLogger("edge.capture")

COST_WINDOW = 10.0  # seconds the encoder's cost is averaged over
IDLE_POLL = 0.5


class JpegToH264:
    def __init__(self, name: str, fps: float, encoder: str, deliver: Callable[[AccessUnit], None]) -> None:
        self.name = name
        self.fps = fps
        self.choice = encoder
        self._deliver = deliver
        self._lock = threading.Condition()
        self._pending: tuple[bytes, float] | None = None
        self._running = False
        self._thread: threading.Thread | None = None
        self.feed = UnitFeed(fps)  # numbering, the timeline and the measured bitrate; no loop
        self.encoder: H264Encoder | None = None
        self.error: str | None = None
        self._broken = False  # the configured encoder does not open: retrying every frame would not help
        self.frames = 0
        self.seconds = 0.0  # decoding and encoding, over the camera's life
        self._costs: collections.deque[tuple[float, float]] = collections.deque(maxlen=4096)

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        with self._lock:
            if self._running or self._broken:
                return
            self._running = True
            self._pending = None
            self._thread = threading.Thread(target=self._run, name=f"h264-{self.name}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._running = False
            self._pending = None
            self._lock.notify()

    def join(self, timeout: float) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout)

    def offer(self, jpeg: bytes, timestamp: float) -> None:
        """The newest frame (capture thread); one not encoded yet is replaced, never queued."""
        with self._lock:
            if self._running:
                self._pending = (jpeg, timestamp)
                self._lock.notify()

    def _take(self) -> tuple[bytes, float] | None:
        with self._lock:
            while self._running and self._pending is None:
                self._lock.wait(IDLE_POLL)
            pending, self._pending = self._pending, None
            return pending if self._running else None

    def _run(self) -> None:
        encoder = H264Encoder(self.fps, codec=self.choice)
        checker = AccessUnitChecker()
        announced = False
        try:
            while True:
                pending = self._take()
                if pending is None:
                    return
                jpeg, timestamp = pending
                started = time.perf_counter()
                image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
                if image is None:
                    continue
                units = encoder.encode(image)
                spent = time.perf_counter() - started
                self.seconds += spent
                self.frames += 1
                self._costs.append((time.monotonic(), spent))
                if not announced and encoder.name is not None:
                    announced = True
                    self.encoder = encoder
                    self.error = None
                    tried = f" ({'; '.join(encoder.passed_over)})" if encoder.passed_over else ""
                    log.info("%s: encoding H.264 for publishing with %s%s", self.name, encoder.name, tried)
                for data, _ in units:
                    try:
                        checked = checker.check(data)
                    except H264Error:
                        continue
                    unit = self.feed.make(checked.data, checked.key, checked.params, timestamp)
                    self.feed.publish(unit)
                    self._deliver(unit)
        except EncoderError as exc:
            self.error = str(exc)
            self._broken = True
            log.warning("%s: cannot encode H.264 for publishing: %s; set h264_encoder: auto or libx264", self.name, exc)
        except Exception:  # an encoder surprise must not take the process down; the targets get nothing
            self.error = "internal error (see the log)"
            log.warning("%s: encoding H.264 for publishing failed", self.name, exc_info=True)
        finally:
            encoder.close()
            with self._lock:
                self._running = False

    def status(self) -> dict[str, Any]:
        """The encoder in use and what it costs (§10): decode plus encode, per frame and in cores."""
        now = time.monotonic()
        recent = [spent for at, spent in list(self._costs) if now - at <= COST_WINDOW]
        interval, kbps = self.feed.measured()
        params = self.feed.params
        return {
            "name": self.encoder.name if self.encoder is not None else None,
            "requested": self.choice,
            "running": self._running,
            "error": self.error,
            "frames": self.frames,
            "fps": round(len(recent) / COST_WINDOW, 2),
            "ms_per_frame": round(1000 * sum(recent) / len(recent), 2) if recent else None,
            "cpu_cores": round(sum(recent) / COST_WINDOW, 4),
            "bitrate_kbps": round(kbps, 1),
            "keyframe_interval_s": None if interval is None else round(interval, 3),
            "width": params.width if params is not None else None,
            "height": params.height if params is not None else None,
        }
