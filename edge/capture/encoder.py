"""BGR pictures to H.264 access units with libx264 (PyAV), for a camera that has no H.264 of its own
but is asked to deliver it: ``source: virtual`` with ``codec: h264`` (§9 of docs/interface.md).

Settings for a live stream: ``ultrafast``/``zerolatency`` (no look-ahead, no B-frames, each picture
comes out of the encoder as soon as it goes in), a key frame every second, SPS/PPS repeated in
front of every key frame and an access unit delimiter in front of every unit, so any unit a
viewer starts from is self-contained.
"""

from __future__ import annotations

import time
from fractions import Fraction

import av
import cv2
import numpy as np
from av.video.frame import PictureType

from ..formats.fmp4 import TIMESCALE


class H264Encoder:
    """One camera's encoder; opened on the first picture (its size decides the stream's)."""

    def __init__(self, fps: float, bitrate_kbps: int | None = None) -> None:
        self.fps = fps
        self.bitrate_kbps = bitrate_kbps
        self._ctx: av.VideoCodecContext | None = None
        self._size: tuple[int, int] = (0, 0)
        self._pts = 0
        self._force_key = False
        self.seconds = 0.0  # time spent encoding (the cost shown in status)
        self.frames = 0

    def _open(self, width: int, height: int) -> av.VideoCodecContext:
        ctx = av.CodecContext.create("libx264", "w")
        assert isinstance(ctx, av.VideoCodecContext)
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, TIMESCALE)
        ctx.framerate = Fraction(self.fps).limit_denominator(1001)
        keyint = max(1, round(self.fps))
        params = f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=0:repeat-headers=1:aud=1"
        options = {"preset": "ultrafast", "tune": "zerolatency", "x264-params": params}
        if self.bitrate_kbps:
            ctx.bit_rate = self.bitrate_kbps * 1000
        ctx.options = options
        ctx.thread_count = 1  # one slice per picture: each unit is whole as soon as it is written
        ctx.open()
        return ctx

    def request_key(self) -> None:
        """The next picture becomes a key frame (a viewer is waiting after a pause)."""
        self._force_key = True

    def encode(self, image: np.ndarray) -> list[tuple[bytes, bool]]:
        """The access units (Annex-B bytes, key frame) the picture gave; zerolatency: one."""
        started = time.perf_counter()
        height, width = image.shape[:2]
        width, height = width & ~1, height & ~1  # 4:2:0 needs even sizes
        if self._ctx is None or (width, height) != self._size:
            self._ctx, self._size = self._open(width, height), (width, height)
        yuv = np.asarray(cv2.cvtColor(image[:height, :width], cv2.COLOR_BGR2YUV_I420), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = self._pts
        self._pts += round(TIMESCALE / self.fps)
        if self._force_key:
            frame.pict_type = PictureType.I
            self._force_key = False
        units = [(bytes(packet), bool(packet.is_keyframe)) for packet in self._ctx.encode(frame)]
        self.seconds += time.perf_counter() - started
        self.frames += 1
        return units

    def close(self) -> None:
        self._ctx = None
