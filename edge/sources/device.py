"""A V4L2 camera (``/dev/videoN``, ``/dev/v4l/by-id/...`` or an index), asked for MJPG so that
its own JPEG can be passed through; with ``codec: h264``, asked for its H.264 mode instead (UVC
cameras with an H.264 encoder), read through FFmpeg's v4l2 input and passed through too."""

from __future__ import annotations

import logging
import os
import re

import cv2

from ..config import SourceKind
from .base import SourceError
from .demux import Demuxer
from .diagnose import why_not_open
from .opencv import OpenCVSource, read_timeouts
from .registry import register

log = logging.getLogger("edge.sources")
_VIDEO_NODE = re.compile(r"^/dev/video(\d+)$")


@register(SourceKind.DEVICE)
class DeviceSource(OpenCVSource):
    def open(self) -> None:
        self.close()
        if self.cam.codec != "h264":
            super().open()
            return
        path = device_path(self.target)
        options = {
            "input_format": "h264",
            "video_size": f"{self.cam.width}x{self.cam.height}",
            "framerate": f"{self.cam.fps:g}",
        }
        demux = Demuxer(self.description, loop=False)
        if not os.path.exists(path):
            raise SourceError(why_not_open(path))
        if not demux.open(path, self.stall_timeout, network=False, fmt="v4l2", options=options):
            raise SourceError(f"{path}: gives no H.264 (codec: h264); use codec: auto for its MJPG mode")
        self._demuxing(demux)
        log.info("%s: device gives H.264 %dx%d", self.description, self.width, self.height)

    def _capture(self, target: str | int) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(device_index(target), cv2.CAP_V4L2, read_timeouts(self))
        if cap.isOpened():
            # MJPG lets USB 2 cameras reach 640x480@30 and beyond; YUYV often cannot.
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.cam.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.cam.height)
            cap.set(cv2.CAP_PROP_FPS, self.cam.fps)
            # One buffered frame: otherwise the driver hands out frames seconds old.
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    def _not_opened(self) -> SourceError:
        return SourceError(why_not_open(device_path(self.target)))

    def _raw_jpeg(self, cap: cv2.VideoCapture) -> bool:
        # V4L2 hands out the driver's buffer, the camera's JPEG, when asked not to convert it.
        return bool(cap.set(cv2.CAP_PROP_CONVERT_RGB, 0))

    def _opened(self, cap: cv2.VideoCapture) -> None:
        reported = cap.get(cv2.CAP_PROP_FPS)
        self.fps = reported if 0 < reported <= 240 else self.cam.fps
        log.info(
            "%s: device gives %s %dx%d @ %.3g fps (asked MJPG %dx%d @ %.3g)",
            self.description,
            self.fourcc or "?",
            self.width,
            self.height,
            self.fps,
            self.cam.width,
            self.cam.height,
            self.cam.fps,
        )


def device_path(target: str | int) -> str:
    return f"/dev/video{target}" if isinstance(target, int) else target


def device_index(target: str | int) -> int:
    """OpenCV's V4L2 backend opens devices by index: map ``/dev/videoN`` and its
    ``/dev/v4l/by-id/...`` symlinks to N (a missing path raises :class:`SourceError`)."""
    if isinstance(target, int):
        return target
    match = _VIDEO_NODE.match(os.path.realpath(target))
    if match is None:
        raise SourceError(why_not_open(target) if not os.path.exists(target) else f"{target} is not a V4L2 video node")
    return int(match.group(1))
