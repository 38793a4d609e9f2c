"""One thread per camera: read, encode JPEG once, publish to the slot; reconnect with backoff.

The thread is the only place that touches the source and the encoder, so viewers cost
the camera nothing: a hundred viewers and none cost the same capture work. When the
source fails the thread keeps publishing a placeholder, so streams stay open and
viewers see "NO SIGNAL" instead of a frozen picture or a dropped connection.
"""

from __future__ import annotations

import collections
import enum
import logging
import threading
import time
from collections.abc import Callable

import cv2
import numpy as np

from .config import CameraConfig
from .redact import redact_source
from .slot import Frame, FrameSlot
from .sources import Source, SourceError, make_placeholder, make_source, resolve_auto

log = logging.getLogger("edge.capture")

BACKOFF_START = 1.0
BACKOFF_MAX = 10.0
PLACEHOLDER_PERIOD = 1.0


class State(enum.StrEnum):
    STARTING = "starting"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"


class Capture:
    """Owns a camera's source and its capture thread; publishes into ``slot``."""

    def __init__(
        self,
        cam: CameraConfig,
        slot: FrameSlot | None = None,
        on_encode: Callable[[float], None] | None = None,
    ) -> None:
        self.cam = cam
        self.slot = slot or FrameSlot()
        self.state = State.STARTING
        self.frames_captured = 0
        self.last_real_frame = 0.0  # time.monotonic() of the last real (not placeholder) frame
        self.frames_since_open = 0
        self.width = cam.width
        self.height = cam.height
        self._on_encode = on_encode
        self._stop = threading.Event()
        self._source: Source | None = None
        self._recent: collections.deque[float] = collections.deque(maxlen=64)
        self._thread = threading.Thread(target=self._run, name=f"capture-{cam.name}", daemon=True)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            # OpenCV reads cannot be interrupted; the thread is a daemon and ends with the process.
            log.warning("%s: capture thread still busy in its source after shutdown began", self.cam.name)

    def stop(self, timeout: float = 3.0) -> None:
        self.request_stop()
        self.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- what status and readiness report --------------------------------------------

    @property
    def source_description(self) -> str:
        if self._source is not None:
            return self._source.description
        return redact_source(self.cam.source)

    @property
    def source_kind(self) -> str:
        return self._source.kind if self._source is not None else "unknown"

    def measured_fps(self) -> float:
        """Real frames per second over the last couple of seconds (0 when none arrive)."""
        recent = list(self._recent)
        now = time.monotonic()
        recent = [t for t in recent if now - t <= 2.0]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / (recent[-1] - recent[0])

    # -- the thread ------------------------------------------------------------------

    def _run(self) -> None:
        backoff = BACKOFF_START
        try:
            while not self._stop.is_set():
                try:
                    self._open_source()
                    self._stream()  # returns only when asked to stop
                    break
                except SourceError as exc:
                    self._close_source()
                    if self.frames_since_open:  # it worked for a while: start the backoff over
                        backoff = BACKOFF_START
                    self._enter_reconnecting(str(exc), backoff)
                    self._wait_with_placeholder(backoff, str(exc))
                    backoff = min(backoff * 2, BACKOFF_MAX)
                except Exception:  # a bug or an OpenCV surprise must not kill the camera for good
                    log.exception("%s: capture failed unexpectedly; retrying", self.cam.name)
                    self._close_source()
                    self.state = State.RECONNECTING
                    self._wait_with_placeholder(backoff, "internal error")
                    backoff = min(backoff * 2, BACKOFF_MAX)
        finally:
            self._close_source()
            self.state = State.STOPPED
            log.info("%s: capture stopped", self.cam.name)

    def _open_source(self) -> None:
        self.frames_since_open = 0
        if self._source is None:
            if self.cam.source == "auto":
                self._source = resolve_auto(self.cam, self._stop)  # opens it
                return
            self._source = make_source(self.cam, self._stop)
        self._source.open()

    def _stream(self) -> None:
        """Read and publish until the source fails (raises) or stop is asked (returns)."""
        source = self._source
        assert source is not None
        self.width, self.height = source.width, source.height
        while True:
            frame = source.read()
            if frame is None or self._stop.is_set():
                return
            if self.state is not State.STREAMING:
                height, width = frame.shape[:2]
                log.info("%s: streaming from %s (%dx%d)", self.cam.name, source.description, width, height)
                self.state = State.STREAMING
            if self._publish(frame, placeholder=False):
                self.frames_since_open += 1

    def _publish(self, image: np.ndarray, placeholder: bool) -> bool:
        timestamp = time.time()
        started = time.perf_counter()
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.cam.quality])
        elapsed = time.perf_counter() - started
        jpeg = buf.tobytes() if ok else b""
        # Never hand viewers a broken frame: the contract promises complete JPEGs.
        if not jpeg.startswith(b"\xff\xd8") or not jpeg.endswith(b"\xff\xd9"):
            log.warning("%s: dropped a frame the encoder could not turn into a JPEG", self.cam.name)
            return False
        if self._on_encode is not None:
            self._on_encode(elapsed)
        self.slot.publish(Frame(self.slot.next_seq(), timestamp, jpeg, placeholder))
        if not placeholder:
            self.frames_captured += 1
            now = time.monotonic()
            self.last_real_frame = now
            self._recent.append(now)
        return True

    def _enter_reconnecting(self, reason: str, backoff: float) -> None:
        if self.state is not State.RECONNECTING:
            log.warning("%s: source down (%s); showing placeholder, retrying", self.cam.name, reason)
        else:
            log.info("%s: still down (%s); next try in %.0f s", self.cam.name, reason, backoff)
        self.state = State.RECONNECTING

    def _wait_with_placeholder(self, seconds: float, reason: str) -> None:
        """Publish the placeholder about once a second until the next attempt is due."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            image = make_placeholder(self.cam.width, self.cam.height, self.cam.name, reason)
            self._publish(image, placeholder=True)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stop.wait(min(PLACEHOLDER_PERIOD, remaining)):
                return

    def _close_source(self) -> None:
        if self._source is not None:
            try:
                self._source.close()
            except Exception:  # releasing a vanished device can fail; it is gone either way
                log.debug("%s: error while releasing the source", self.cam.name, exc_info=True)
