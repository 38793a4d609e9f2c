"""What every source is: opened by the capture thread, read frame by frame, closed.

A source hands out frames as the camera's own JPEG bytes where it has them, else as BGR
``numpy`` images (see :class:`Captured`). Sources that have no clock of their own (the virtual
camera, video files) pace themselves to the configured rate (:class:`Pacer`); devices and
streams are paced by the hardware or the network. Our own waits take the capture thread's stop
event so shutdown does not wait out a frame period.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..config import CameraConfig, SourceKind, SourceSpec
from ..redact import remember_secrets
from ..references import SecretReferenceError, expand

DESCRIPTION_MAX = 120  # a long source (a command line, a URL) is shortened where it is shown
READ_CHUNK = 65536  # bytes read at once from a byte-stream source (a pipe, an HTTP body)


def shorten(text: str, limit: int = DESCRIPTION_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SourceError(Exception):
    """The source cannot be opened or stopped delivering frames."""


@dataclass(slots=True)
class Captured:
    """One frame as a source hands it over: the camera's own JPEG bytes (to pass through
    after checking them), the camera's own H.264 access unit (Annex-B, to pass through after
    checking it), or a decoded BGR image (to encode)."""

    jpeg: bytes | None = None
    image: np.ndarray | None = None
    h264: bytes | None = None


class Source(ABC):
    kind: ClassVar[SourceKind]
    # After open(): frames come as JPEG bytes (MJPEG devices, files, streams, pipes).
    gives_jpeg: bool = False
    # After open(): frames come as H.264 access units (§9 of docs/interface.md).
    gives_h264: bool = False
    # Whether not reading while the camera idles loses nothing: a file or the virtual camera
    # just waits, a device or a stream must be drained or it stalls and serves stale frames.
    pauses_when_idle: bool = False

    def __init__(self, cam: CameraConfig, stop: threading.Event, spec: SourceSpec) -> None:
        self.cam = cam
        self.stop = stop
        self.spec = spec
        self.width = cam.width
        self.height = cam.height
        self.fps = cam.fps
        # A source that neither delivers nor fails for this long has stalled (a hung USB camera,
        # a producer that stopped writing, a stream gone quiet): treated like a failure.
        self.stall_timeout = max(2.0, 3.0 / cam.fps)
        self.secrets: set[str] = set()  # values read from ${...} references (never shown)

    @property
    def description(self) -> str:
        return str(self.kind)

    def expand(self, text: str) -> str:
        """``text`` with its ``${...}`` secret references filled in. Read at every open, so a
        rotated secret counts from the next reconnect; the values go to the log's masker."""
        try:
            expanded = expand(text)
        except SecretReferenceError as exc:
            raise SourceError(str(exc)) from None
        self.secrets.update(expanded.secrets)
        remember_secrets(expanded.secrets)
        return expanded.text

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def read(self) -> Captured | None:
        """The next frame, or ``None`` when asked to stop. Raises :class:`SourceError`."""

    def resume(self) -> None:  # noqa: B027 (a hook: most sources have nothing to restart)
        """Called when the camera wakes from idle: a paced source restarts its clock."""

    def take_discarded(self) -> int:
        """Frames cut out of a byte stream and dropped since the last call (cut short, or
        broken before a frame could be told apart): counted as invalid by the capture."""
        return 0

    def close(self) -> None:
        return None


class Pacer:
    """Schedules frames on a fixed grid so rounding errors do not drift the rate."""

    def __init__(self, fps: float, stop: threading.Event) -> None:
        self.period = 1.0 / fps
        self.stop = stop
        self.next = time.monotonic()

    def restart(self) -> None:
        self.next = time.monotonic()

    def wait(self) -> bool:
        """Sleep until the next frame is due; ``False`` if stopping."""
        now = time.monotonic()
        if self.next < now - self.period:  # fell behind (suspend, overload): restart the grid
            self.next = now
        delay = self.next - now
        self.next += self.period
        return not (delay > 0 and self.stop.wait(delay)) and not self.stop.is_set()
