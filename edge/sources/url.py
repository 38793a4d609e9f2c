"""A URL that is not plain HTTP (``rtsp://``, ``rtmp://``, ...), or an HTTP answer that is not
MJPEG: H.264 is demuxed and passed through (``demux.py``); other codecs are decoded through
OpenCV's FFmpeg backend."""

from __future__ import annotations

import cv2

from ..config import SourceKind
from .base import Captured
from .demux import Demuxer
from .opencv import OpenCVSource, read_timeouts
from .registry import register


@register(SourceKind.URL)
class UrlSource(OpenCVSource):
    _demux: Demuxer | None = None

    def _capture(self, target: str | int) -> cv2.VideoCapture:
        return cv2.VideoCapture(str(target), cv2.CAP_FFMPEG, read_timeouts(self))

    def open(self) -> None:
        self.close()
        if self.cam.codec != "mjpeg":
            demux = Demuxer(self.description, loop=False)
            if demux.open(self.expand(str(self.target)), self.stall_timeout, network=True):
                self._demux, self.gives_h264, self.gives_jpeg = demux, True, False
                self.width, self.height = demux.width or self.cam.width, demux.height or self.cam.height
                return
        self.gives_h264 = False
        super().open()

    def read(self) -> Captured | None:
        if self._demux is None:
            return super().read()
        data = self._demux.read()
        return None if self.stop.is_set() else Captured(h264=data)

    def close(self) -> None:
        if self._demux is not None:
            self._demux.close()
            self._demux = None
        super().close()
