"""Frame sources: OpenCV device/file/URL, the virtual camera, and the placeholder image.

A source hands out frames as the camera's own JPEG bytes where it has them, else as BGR
``numpy`` images (see :class:`Captured`); pipes and HTTP streams live in ``mjpeg_sources.py``.
Sources that have no clock of their own (the virtual camera, video files) pace themselves
to the configured rate; devices and URLs are paced by the hardware or the network. Our own
waits take the capture thread's stop event so shutdown does not wait out a frame period;
OpenCV's reads cannot be interrupted, which is why devices and URLs get read timeouts and
capture threads are daemons.
"""

from __future__ import annotations

import logging
import os
import re
import textwrap
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import cv2
import numpy as np

from .config import PIPE_PREFIX, CameraConfig
from .devices import why_not_open
from .redact import redact_source, remember_secrets
from .references import SecretReferenceError, expand

log = logging.getLogger("edge.sources")
# OpenCV prints its own warnings straight to stderr; our log says what matters.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
_VIDEO_NODE = re.compile(r"^/dev/video(\d+)$")

AUTO_DEVICE = "/dev/video0"
_FONT = cv2.FONT_HERSHEY_SIMPLEX


class SourceError(Exception):
    """The source cannot be opened or stopped delivering frames."""


@dataclass(slots=True)
class Captured:
    """One frame as a source hands it over: the camera's own JPEG bytes (to pass through
    after checking them), or a decoded BGR image (to encode)."""

    jpeg: bytes | None = None
    image: np.ndarray | None = None


class Source(ABC):
    kind: str = ""
    # After open(): frames come as JPEG bytes (MJPEG devices, files, streams, pipes).
    gives_jpeg: bool = False
    # Whether not reading while the camera idles loses nothing: a file or the virtual camera
    # just waits, a device or a stream must be drained or it stalls and serves stale frames.
    pauses_when_idle: bool = False

    def __init__(self, cam: CameraConfig, stop: threading.Event) -> None:
        self.cam = cam
        self.stop = stop
        self.width = cam.width
        self.height = cam.height
        self.fps = cam.fps
        # A source that neither delivers nor fails for this long has stalled (a hung USB camera,
        # a producer that stopped writing, a stream gone quiet): treated like a failure.
        self.stall_timeout = max(2.0, 3.0 / cam.fps)
        self.secrets: set[str] = set()  # values read from ${...} references (never shown)

    @property
    def description(self) -> str:
        return self.kind

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


class _Pacer:
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


class VirtualSource(Source):
    """A synthetic moving test pattern with a frame counter and a clock.

    The static part (colour bars, gradient) is drawn once; a frame is a copy of it
    plus a moving bar and two lines of text, so it costs far less than encoding it.
    Large flat areas also keep the JPEG encoder cheap.
    """

    kind = "virtual"
    pauses_when_idle = True

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

    def resume(self) -> None:
        self._pacer.restart()

    def read(self) -> Captured | None:
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
        return Captured(image=frame)


class OpenCVSource(Source):
    """A V4L2 device, a video file or a URL, read through OpenCV.

    Where the source carries JPEG (a UVC camera asked for MJPG, an MJPEG file or stream),
    OpenCV is asked for the raw bytes instead of a decoded picture: ``CAP_PROP_CONVERT_RGB=0``
    on V4L2 hands out the driver's buffer, ``CAP_PROP_FORMAT=-1`` on FFmpeg the demuxed packet.
    """

    def __init__(self, cam: CameraConfig, stop: threading.Event, target: str | int, kind: str) -> None:
        super().__init__(cam, stop)
        self.target = target
        self.kind = kind
        self.pauses_when_idle = kind == "file"
        self._cap: cv2.VideoCapture | None = None
        self._pacer: _Pacer | None = None
        self.fourcc = ""

    @property
    def description(self) -> str:
        return redact_source(self.target)

    def open(self) -> None:
        cap = self._open_capture()
        if not cap.isOpened():
            cap.release()
            reason = why_not_open(device_path(self.target)) if self.kind == "device" else "cannot open it"
            raise SourceError(reason if self.kind == "device" else f"{self.description}: {reason}")
        self._cap = cap
        if self.kind == "device":
            self._configure_device(cap)
        self.fourcc = _fourcc(cap)
        if self.fourcc == "MJPG":
            # The camera's own JPEG: no decode here, and none later unless the config asks for it.
            if self.kind == "device":
                self.gives_jpeg = bool(cap.set(cv2.CAP_PROP_CONVERT_RGB, 0))
            else:
                self.gives_jpeg = bool(cap.set(cv2.CAP_PROP_FORMAT, -1))
        self.width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) or self.cam.width
        self.height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) or self.cam.height
        reported_fps = cap.get(cv2.CAP_PROP_FPS)
        if self.kind == "device":
            self.fps = reported_fps if 0 < reported_fps <= 240 else self.cam.fps
            log.info(
                "%s: device gives %s %dx%d @ %.3g fps (asked MJPG %dx%d @ %.3g)",
                self.description,
                self.fourcc or "?",
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
        # Bounded reads: a device or a stream that goes quiet must turn into a reconnect,
        # not a capture thread blocked for ever.
        read_ms = int(self.stall_timeout * 1000)
        target = self.target if isinstance(self.target, int) else self.expand(self.target)
        if self.kind == "device":
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, read_ms]
            return cv2.VideoCapture(device_index(target), cv2.CAP_V4L2, params)
        if self.kind == "url":
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, read_ms]
            return cv2.VideoCapture(str(target), cv2.CAP_FFMPEG, params)
        return cv2.VideoCapture(str(target), cv2.CAP_FFMPEG)

    def _configure_device(self, cap: cv2.VideoCapture) -> None:
        # MJPG lets USB 2 cameras reach 640x480@30 and beyond; YUYV often cannot.
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.cam.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.cam.height)
        cap.set(cv2.CAP_PROP_FPS, self.cam.fps)
        # One buffered frame: otherwise the driver hands out frames seconds old.
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)

    def resume(self) -> None:
        if self._pacer is not None:
            self._pacer.restart()

    def read(self) -> Captured | None:
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
        if self.gives_jpeg:
            return Captured(jpeg=frame.tobytes())
        return Captured(image=frame)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _fourcc(cap: cv2.VideoCapture) -> str:
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    text = code.to_bytes(4, "little").decode("ascii", errors="replace")
    return text if text.isprintable() and code else ""


def device_path(target: str | int) -> str:
    return f"/dev/video{target}" if isinstance(target, int) else target


def device_index(target: str | int) -> int:
    """OpenCV's V4L2 backend opens devices by index: map ``/dev/videoN`` and its
    ``/dev/v4l/by-id/...`` symlinks to N (a missing path raises :class:`SourceError`)."""
    if isinstance(target, int):
        return target
    match = _VIDEO_NODE.match(os.path.realpath(target))
    if match is None:
        raise SourceError(why_not_open(target) if not os.path.exists(target) else f"{target} is not a V4L2 video node")
    return int(match.group(1))


def make_source(cam: CameraConfig, stop: threading.Event, spec: str | int | None = None) -> Source:
    """Build the source named by ``spec`` (default: the camera's ``source``); ``auto`` is resolved by the caller."""
    spec = cam.source if spec is None else spec
    if spec == "virtual":
        return VirtualSource(cam, stop)
    if isinstance(spec, int):
        return OpenCVSource(cam, stop, spec, "device")
    if spec.startswith(PIPE_PREFIX):
        from .mjpeg_sources import PipeSource

        return PipeSource(cam, stop, spec[len(PIPE_PREFIX) :])
    if spec.startswith("/dev/"):
        return OpenCVSource(cam, stop, spec, "device")
    if spec.lower().startswith(("http://", "https://")):
        from .mjpeg_sources import HttpSource

        return HttpSource(cam, stop, spec)
    if "://" in spec:
        return OpenCVSource(cam, stop, spec, "url")
    return OpenCVSource(cam, stop, os.path.expanduser(spec), "file")


def resolve_auto(cam: CameraConfig, stop: threading.Event) -> tuple[Source, str | None]:
    """``auto``: the default device if it opens now, else the virtual camera, with the reason
    the device was not used."""
    device = make_source(cam, stop, AUTO_DEVICE)
    try:
        device.open()
    except SourceError as exc:
        reason = str(exc)
        log.warning("%s: not using %s: %s; using the virtual camera (test pattern)", cam.name, AUTO_DEVICE, reason)
        virtual = VirtualSource(cam, stop)
        virtual.open()
        return virtual, reason
    log.info("%s: using %s", cam.name, AUTO_DEVICE)
    return device, None


def make_placeholder(width: int, height: int, name: str, reason: str) -> np.ndarray:
    """The "NO SIGNAL" image shown while a source is down, so viewers see why, not a frozen frame."""
    frame = np.full((height, width, 3), 40, dtype=np.uint8)
    s = max(min(width / 640, height / 480), 0.25)
    thick = max(int(2 * s), 1)
    lines = [
        ("NO SIGNAL", 1.6 * s, (0, 0, 255)),
        (name, 0.9 * s, (255, 255, 255)),
        (time.strftime("%Y-%m-%d %H:%M:%S"), 0.7 * s, (200, 200, 200)),
    ]
    # The reason says what to do: wrap it rather than cut it (three lines at most).
    lines += [(part, 0.5 * s, (160, 160, 160)) for part in textwrap.wrap(reason, 60, max_lines=3, placeholder=" ...")]
    y = int(height * 0.3)
    for text, scale, colour in lines:
        (tw, th), _ = cv2.getTextSize(text, _FONT, scale, thick)
        cv2.putText(frame, text, (max((width - tw) // 2, 2), y), _FONT, scale, colour, thick)
        y += int(th * 2.2) + 2
    return frame
