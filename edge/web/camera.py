"""A camera as the web layer sees it: its config, its capture thread and its broadcast."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from ..capture import Capture
from ..config import CameraConfig
from ..fanout.broadcast import Broadcast
from ..fanout.connections import Connection
from ..fanout.keyframes import KeyFrameBroadcast
from ..publish import CameraPublisher


@dataclass
class Camera:
    config: CameraConfig
    capture: Capture
    broadcast: Broadcast  # JPEG frames
    units: KeyFrameBroadcast  # H.264 access units (an H.264 camera's)
    publisher: CameraPublisher  # its publish: targets (§10)

    @property
    def name(self) -> str:
        return self.config.name

    @contextlib.contextmanager
    def watch(self, conn: Connection) -> Iterator[None]:
        """Keep the camera awake while ``conn`` streams. A camera that was idle (or an H.264 camera
        that was not decoding for JPEG) has only a stale frame in its slot: a JPEG stream starts
        after it, with a frame captured after it arrived."""
        capture = self.capture
        jpeg = conn.kind.jpeg
        latest = capture.slot.latest
        if jpeg and capture.jpeg_stale and latest is not None:
            conn.last_seq = latest.seq
        with capture.watching(jpeg):
            yield
