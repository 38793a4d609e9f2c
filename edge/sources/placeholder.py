"""The "NO SIGNAL" picture shown while a source is down."""

from __future__ import annotations

import textwrap
import time

import cv2
import numpy as np

_FONT = cv2.FONT_HERSHEY_SIMPLEX


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
