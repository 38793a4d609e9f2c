"""Frame sources: OpenCV device/file/URL, the virtual camera, and the placeholder image.

A source hands out BGR ``numpy`` frames. Sources that have no clock of their own (the
virtual camera, video files) pace themselves to the configured rate; devices and URLs
are paced by the hardware or the network. Our own waits take the capture thread's stop
event so shutdown does not wait out a frame period; OpenCV's reads cannot be interrupted,
which is why URL sources get read timeouts and capture threads are daemons.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from abc import ABC, abstractmethod

import cv2
import numpy as np

from .config import CameraConfig
from .redact import redact_source

log = logging.getLogger("edge.sources")
# OpenCV prints its own warnings straight to stderr; our log says what matters.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
_VIDEO_NODE = re.compile(r"^/dev/video(\d+)$")

AUTO_DEVICE = "/dev/video0"
_FONT = cv2.FONT_HERSHEY_SIMPLEX


class SourceError(Exception):
    """The source cannot be opened or stopped delivering frames."""


class Source(ABC):
    kind: str = ""

    def __init__(self, cam: CameraConfig, stop: threading.Event) -> None:
        self.cam = cam
        self.stop = stop
        self.width = cam.width
        self.height = cam.height
        self.fps = cam.fps

    @property
    def description(self) -> str:
        return self.kind

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def read(self) -> np.ndarray | None:
        """The next frame, or ``None`` when asked to stop. Raises :class:`SourceError`."""

    def close(self) -> None:
        return None


class _Pacer:
    """Schedules frames on a fixed grid so rounding errors do not drift the rate."""

    def __init__(self, fps: float, stop: threading.Event) -> None:
        self.period = 1.0 / fps
        self.stop = stop
        self.next = time.monotonic()

    def wait(self) -> bool:
        """Sleep until the next frame is due; ``False`` if stopping."""
        now = time.monotonic()
        if self.next < now - self.period:  # fell behind (suspend, overload): restart the grid
            self.next = now
        delay = self.next - now
        self.next += self.period
        return not (delay > 0 and self.stop.wait(delay)) and not self.stop.is_set()


class VirtualSource(Source):
    """A synthetic moving test pattern with a frame counter and a clock.

    The static part (colour bars, gradient) is drawn once; a frame is a copy of it
    plus a moving bar and two lines of text, so it costs far less than encoding it.
    Large flat areas also keep the JPEG encoder cheap.
    """

    kind = "virtual"

    def open(self) -> None:
        w, h = self.width, self.height
        bars = np.array(
            [[192, 192, 192], [0, 192, 192], [192, 192, 0], [0, 192, 0], [192, 0, 192], [0, 0, 192], [192, 0, 0]],
            dtype=np.uint8,
        )
        columns = bars[(np.arange(w) * len(bars)) // w]
        background = np.empty((h, w, 3), dtype=np.uint8)
        split = (h * 2) // 3
        background[:split] = columns
        ramp = np.linspace(16, 235, w, dtype=np.uint8)
        background[split:] = ramp[None, :, None]
        self._background = background
        self._count = 0
        self._scale = max(h / 480, 0.3)
        self._pacer = _Pacer(self.fps, self.stop)

    def read(self) -> np.ndarray | None:
        if not self._pacer.wait():
            return None
        self._count += 1
        frame = self._background.copy()
        w, s = self.width, self._scale
        bar = max(w // 40, 2)
        x = int((self._count * 4 * s) % (w + bar)) - bar
        frame[:, max(x, 0) : max(x + bar, 0)] = 255
        now = time.time()
        clock = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
        cv2.rectangle(frame, (0, 0), (w, int(70 * s)), (32, 32, 32), -1)
        thick = max(int(2 * s), 1)
        counter = f"{self.cam.name}  #{self._count:06d}"
        cv2.putText(frame, counter, (int(10 * s), int(30 * s)), _FONT, s, (255, 255, 255), thick)
        cv2.putText(frame, f"virtual  {clock}", (int(10 * s), int(60 * s)), _FONT, s * 0.8, (0, 255, 255), thick)
        return frame


class OpenCVSource(Source):
    """A V4L2 device, a video file or a URL, read through OpenCV."""

    def __init__(self, cam: CameraConfig, stop: threading.Event, target: str | int, kind: str) -> None:
        super().__init__(cam, stop)
        self.target = target
        self.kind = kind
        self._cap: cv2.VideoCapture | None = None
        self._pacer: _Pacer | None = None

    @property
    def description(self) -> str:
        return redact_source(self.target)

    def open(self) -> None:
        cap = self._open_capture()
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self.description}")
        self._cap = cap
        if self.kind == "device":
            self._configure_device(cap)
        self.width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) or self.cam.width
        self.height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) or self.cam.height
        reported_fps = cap.get(cv2.CAP_PROP_FPS)
        if self.kind == "device":
            self.fps = reported_fps if 0 < reported_fps <= 240 else self.cam.fps
            log.info(
                "%s: device gives %dx%d @ %.3g fps (asked %dx%d @ %.3g)",
                self.description,
                self.width,
                self.height,
                self.fps,
                self.cam.width,
                self.cam.height,
                self.cam.fps,
            )
        if self.kind == "file":
            # A file has no clock: play it at the configured rate.
            self._pacer = _Pacer(self.cam.fps, self.stop)

    def _open_capture(self) -> cv2.VideoCapture:
        if self.kind == "device":
            return cv2.VideoCapture(device_index(self.target), cv2.CAP_V4L2)
        if self.kind == "url":
            # Bounded open/read so an unreachable camera turns into a reconnect, not a hung thread.
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000]
            return cv2.VideoCapture(str(self.target), cv2.CAP_FFMPEG, params)
        return cv2.VideoCapture(str(self.target))

    def _configure_device(self, cap: cv2.VideoCapture) -> None:
        # MJPG lets USB 2 cameras reach 640x480@30 and beyond; YUYV often cannot.
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.cam.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.cam.height)
        cap.set(cv2.CAP_PROP_FPS, self.cam.fps)
        # One buffered frame: otherwise the driver hands out frames seconds old.
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)

    def read(self) -> np.ndarray | None:
        cap = self._cap
        if cap is None:
            raise SourceError("source is not open")
        if self._pacer is not None and not self._pacer.wait():
            return None
        ok, frame = cap.read()
        if not ok and self.kind == "file":
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)  # loop the file
            ok, frame = cap.read()
        if not ok or frame is None or frame.size == 0:
            raise SourceError(f"{self.description} stopped delivering frames")
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def device_index(target: str | int) -> int:
    """OpenCV's V4L2 backend opens devices by index: map ``/dev/videoN`` and its
    ``/dev/v4l/by-id/...`` symlinks to N (a missing path raises :class:`SourceError`)."""
    if isinstance(target, int):
        return target
    match = _VIDEO_NODE.match(os.path.realpath(target))
    if match is None:
        raise SourceError(f"cannot open {target}: not a V4L2 video device")
    return int(match.group(1))


def make_source(cam: CameraConfig, stop: threading.Event, spec: str | int | None = None) -> Source:
    """Build the source named by ``spec`` (default: the camera's ``source``); ``auto`` is resolved by the caller."""
    spec = cam.source if spec is None else spec
    if spec == "virtual":
        return VirtualSource(cam, stop)
    if isinstance(spec, int):
        return OpenCVSource(cam, stop, spec, "device")
    if spec.startswith("/dev/"):
        return OpenCVSource(cam, stop, spec, "device")
    if "://" in spec:
        return OpenCVSource(cam, stop, spec, "url")
    return OpenCVSource(cam, stop, os.path.expanduser(spec), "file")


def resolve_auto(cam: CameraConfig, stop: threading.Event) -> Source:
    """``auto``: the default device if it opens now, else the virtual camera."""
    device = make_source(cam, stop, AUTO_DEVICE)
    try:
        device.open()
    except SourceError:
        log.warning("%s: no camera at %s; using the virtual camera (test pattern)", cam.name, AUTO_DEVICE)
        virtual = VirtualSource(cam, stop)
        virtual.open()
        return virtual
    log.info("%s: using %s", cam.name, AUTO_DEVICE)
    return device


def make_placeholder(width: int, height: int, name: str, reason: str) -> np.ndarray:
    """The "NO SIGNAL" image shown while a source is down, so viewers see why, not a frozen frame."""
    frame = np.full((height, width, 3), 40, dtype=np.uint8)
    s = max(min(width / 640, height / 480), 0.25)
    thick = max(int(2 * s), 1)
    lines = [
        ("NO SIGNAL", 1.6 * s, (0, 0, 255)),
        (name, 0.9 * s, (255, 255, 255)),
        (time.strftime("%Y-%m-%d %H:%M:%S"), 0.7 * s, (200, 200, 200)),
        (reason[:60], 0.5 * s, (160, 160, 160)),
    ]
    y = int(height * 0.3)
    for text, scale, colour in lines:
        (tw, th), _ = cv2.getTextSize(text, _FONT, scale, thick)
        cv2.putText(frame, text, (max((width - tw) // 2, 2), y), _FONT, scale, colour, thick)
        y += int(th * 2.2) + 2
    return frame
