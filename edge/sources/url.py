"""A URL that is not plain HTTP (``rtsp://``, ``rtmp://``, ...), or an HTTP answer that is not
MJPEG: H.264 is demuxed and passed through (``demux.py``); other codecs are decoded through
OpenCV's FFmpeg backend."""

from __future__ import annotations

import cv2

from ..config import SourceKind
from .demux import Demuxer
from .opencv import OpenCVSource, read_timeouts
from .registry import register


@register(SourceKind.URL)
class UrlSource(OpenCVSource):
    def _capture(self, target: str | int) -> cv2.VideoCapture:
        return cv2.VideoCapture(str(target), cv2.CAP_FFMPEG, read_timeouts(self))

    def open(self) -> None:
        self.close()
        if self.cam.codec != "mjpeg":
            demux = Demuxer(self.description, loop=False)
            if demux.open(self.expand(str(self.target)), self.stall_timeout, network=True):
                self._demuxing(demux)
                return
        self.gives_h264 = False
        super().open()
