"""``source: virtual``: a synthetic moving test pattern, so that everything works without a camera."""

from __future__ import annotations

import time

import cv2
import numpy as np

from ..config import SourceKind
from .base import Captured, Pacer, Source
from .registry import register

_FONT = cv2.FONT_HERSHEY_SIMPLEX


@register(SourceKind.VIRTUAL)
class VirtualSource(Source):
    """A synthetic moving test pattern with a frame counter and a clock.

    The static part (colour bars, gradient) is drawn once; a frame is a copy of it
    plus a moving bar and two lines of text, so it costs far less than encoding it.
    Large flat areas also keep the JPEG encoder cheap.
    """

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
        self._pacer = Pacer(self.fps, self.stop)

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
