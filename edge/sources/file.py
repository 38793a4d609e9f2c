"""A video file, played at the configured rate and in a loop (a file has no clock of its own).
An H.264 file (``.mp4``, ``.mkv``, ``.h264``) is demuxed and passed through (``demux.py``); other
files are read through OpenCV (an MJPEG file's own JPEGs, or decoded pictures)."""

from __future__ import annotations

import os

import cv2
import numpy as np

from ..config import SourceKind
from .base import Captured, Pacer
from .demux import Demuxer
from .opencv import OpenCVSource
from .registry import register


@register(SourceKind.FILE)
class FileSource(OpenCVSource):
    pauses_when_idle = True
    _pacer: Pacer | None = None

    def _capture(self, target: str | int) -> cv2.VideoCapture:
        return cv2.VideoCapture(os.path.expanduser(str(target)), cv2.CAP_FFMPEG)

    def _opened(self, cap: cv2.VideoCapture) -> None:
        self._pacer = Pacer(self.cam.fps, self.stop)

    def open(self) -> None:
        self.close()
        if self.cam.codec != "mjpeg":
            demux = Demuxer(self.description, loop=True)
            if demux.open(os.path.expanduser(self.expand(str(self.target))), 5.0, network=False):
                self._demuxing(demux)
                self._pacer = Pacer(self.cam.fps, self.stop)
                return
        self.gives_h264 = False
        super().open()

    def resume(self) -> None:
        if self._pacer is not None:
            self._pacer.restart()
        if self._demux is not None:
            self._demux.rewind_to_key()

    def read(self) -> Captured | None:
        if self._pacer is not None and not self._pacer.wait():
            return None
        return super().read()

    def _grab(self, cap: cv2.VideoCapture) -> tuple[bool, np.ndarray | None]:
        ok, frame = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)  # the end: loop
            ok, frame = cap.read()
        return ok, frame
