"""BGR pictures to H.264 access units (PyAV), for a camera that has no H.264 of its own but is asked
to deliver it: ``source: virtual`` with ``codec: h264`` (§9 of docs/interface.md, always libx264),
and a JPEG camera that publishes (§10, ``h264_encoder``: ``auto`` tries FFmpeg's hardware encoders
first, the Raspberry Pi's ``h264_v4l2m2m``, and falls back to libx264).

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

#: Tried in this order by ``h264_encoder: auto`` before libx264; each is kept only if it opens.
HARDWARE_ENCODERS = ("h264_v4l2m2m",)
SOFTWARE_ENCODER = "libx264"


class EncoderError(RuntimeError):
    """No encoder opened; the message names each one tried and why it failed."""


def candidates(choice: str) -> tuple[str, ...]:
    return (*HARDWARE_ENCODERS, SOFTWARE_ENCODER) if choice == "auto" else (choice,)


class H264Encoder:
    """One camera's encoder; opened on the first picture (its size decides the stream's)."""

    def __init__(self, fps: float, bitrate_kbps: int | None = None, codec: str = SOFTWARE_ENCODER) -> None:
        self.fps = fps
        self.bitrate_kbps = bitrate_kbps
        self.choice = codec
        self.name: str | None = None  # the encoder in use, once one opened
        self.passed_over: list[str] = []  # the encoders `auto` tried first, each with why it failed
        self._ctx: av.VideoCodecContext | None = None
        self._size: tuple[int, int] = (0, 0)
        self._pts = 0
        self._force_key = False
        self.seconds = 0.0  # time spent encoding (the cost shown in status)
        self.frames = 0

    def _open(self, width: int, height: int) -> av.VideoCodecContext:
        self.passed_over = []
        for name in candidates(self.choice):
            try:
                ctx = self._open_one(name, width, height)
            except (av.FFmpegError, ValueError, OSError) as exc:
                self.passed_over.append(f"{name}: {exc}")
                continue
            self.name = name
            return ctx
        raise EncoderError("no H.264 encoder opened (" + "; ".join(self.passed_over) + ")")

    def _open_one(self, name: str, width: int, height: int) -> av.VideoCodecContext:
        ctx = av.CodecContext.create(name, "w")
        assert isinstance(ctx, av.VideoCodecContext)
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, TIMESCALE)
        ctx.framerate = Fraction(self.fps).limit_denominator(1001)
        keyint = max(1, round(self.fps))
        if self.bitrate_kbps:
            ctx.bit_rate = self.bitrate_kbps * 1000
        if name == SOFTWARE_ENCODER:
            params = f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=0:repeat-headers=1:aud=1"
            ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "x264-params": params}
            ctx.thread_count = 1  # one slice per picture: each unit is whole as soon as it is written
        else:
            # A hardware encoder has no CRF: a rate for a clear picture (about 0.1 bit per pixel).
            ctx.gop_size = keyint
            ctx.max_b_frames = 0
            if not self.bitrate_kbps:
                ctx.bit_rate = max(500_000, round(width * height * self.fps * 0.1))
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
        self._size = (0, 0)
