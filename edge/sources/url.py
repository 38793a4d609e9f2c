"""A URL that is not plain HTTP (``rtsp://``, ``rtmp://``, ...), or an HTTP answer that is not
MJPEG: read through OpenCV's FFmpeg backend."""

from __future__ import annotations

import cv2

from ..config import SourceKind
from .opencv import OpenCVSource, read_timeouts
from .registry import register


@register(SourceKind.URL)
class UrlSource(OpenCVSource):
    def _capture(self, target: str | int) -> cv2.VideoCapture:
        return cv2.VideoCapture(str(target), cv2.CAP_FFMPEG, read_timeouts(self))
