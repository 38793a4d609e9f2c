"""What the device, file and URL sources share: a reader through OpenCV's ``VideoCapture``.

Where the source carries JPEG (a UVC camera asked for MJPG, an MJPEG file or stream), OpenCV is
asked for the raw bytes instead of a decoded picture (:meth:`OpenCVSource._raw_jpeg`), so the
capture can pass the camera's own JPEG through. OpenCV's reads cannot be interrupted, which is
why devices and URLs get read timeouts and capture threads are daemons.
"""

from __future__ import annotations

import abc
import threading

import cv2
import numpy as np

from ..config import CameraConfig, SourceSpec
from ..redact import redact_source
from .base import Captured, Source, SourceError
from .demux import Demuxer

# OpenCV prints its own warnings straight to stderr; our log says what matters.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


class OpenCVSource(Source):
    # An H.264 source (``demux.py``), when it turned out to be one: read instead of OpenCV.
    _demux: Demuxer | None = None

    def __init__(self, cam: CameraConfig, stop: threading.Event, spec: SourceSpec) -> None:
        super().__init__(cam, stop, spec)
        self.target = spec.target
        self._cap: cv2.VideoCapture | None = None
        self.fourcc = ""

    @property
    def description(self) -> str:
        return redact_source(self.target)

    @abc.abstractmethod
    def _capture(self, target: str | int) -> cv2.VideoCapture:
        """A ``VideoCapture`` for ``target`` (its secret references filled in)."""

    def _not_opened(self) -> SourceError:
        return SourceError(f"{self.description}: cannot open it")

    def _raw_jpeg(self, cap: cv2.VideoCapture) -> bool:
        """Ask ``cap`` for the demuxed JPEG packets instead of decoded pictures; ``True`` if it agreed."""
        return bool(cap.set(cv2.CAP_PROP_FORMAT, -1))

    def _opened(self, cap: cv2.VideoCapture) -> None:
        """After the capture opened and its size is known."""

    def open(self) -> None:
        target = self.target if isinstance(self.target, int) else self.expand(self.target)
        cap = self._capture(target)
        if not cap.isOpened():
            cap.release()
            raise self._not_opened()
        self._cap = cap
        self.fourcc = _fourcc(cap)
        # The camera's own JPEG: no decode here, and none later unless the config asks for it.
        self.gives_jpeg = self.fourcc == "MJPG" and self._raw_jpeg(cap)
        self.width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) or self.cam.width
        self.height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) or self.cam.height
        self._opened(cap)

    def _grab(self, cap: cv2.VideoCapture) -> tuple[bool, np.ndarray | None]:
        ok, frame = cap.read()
        return bool(ok), frame

    def _demuxing(self, demux: Demuxer) -> None:
        """``demux`` opened the source as H.264: its units are read instead of OpenCV's frames."""
        self._demux, self.gives_h264, self.gives_jpeg = demux, True, False
        self.width, self.height = demux.width or self.cam.width, demux.height or self.cam.height

    def read(self) -> Captured | None:
        if self._demux is not None:
            data = self._demux.read()
            return None if self.stop.is_set() else Captured(h264=data)
        cap = self._cap
        if cap is None:
            raise SourceError("source is not open")
        ok, frame = self._grab(cap)
        if self.stop.is_set():
            return None
        if not ok or frame is None or frame.size == 0:
            raise SourceError(f"{self.description} stopped delivering frames")
        if self.gives_jpeg:
            return Captured(jpeg=frame.tobytes())
        return Captured(image=frame)

    def close(self) -> None:
        if self._demux is not None:
            self._demux.close()
            self._demux = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _fourcc(cap: cv2.VideoCapture) -> str:
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    text = code.to_bytes(4, "little").decode("ascii", errors="replace")
    return text if text.isprintable() and code else ""


def read_timeouts(source: Source) -> list[int]:
    """Bounded opening and reads: a device or a stream that goes quiet must turn into a
    reconnect, not a capture thread blocked for ever."""
    return [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(source.stall_timeout * 1000)]
