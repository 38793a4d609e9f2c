"""A video file, played at the configured rate and in a loop (a file has no clock of its own)."""

from __future__ import annotations

import os

import cv2
import numpy as np

from ..config import SourceKind
from .base import Captured, Pacer
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

    def resume(self) -> None:
        if self._pacer is not None:
            self._pacer.restart()

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
