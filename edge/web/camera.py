"""A camera as the web layer sees it: its config, its capture thread and its broadcast."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from ..capture import Capture
from ..config import CameraConfig
from ..fanout.broadcast import Broadcast
from ..fanout.connections import Connection


@dataclass
class Camera:
    config: CameraConfig
    capture: Capture
    broadcast: Broadcast

    @property
    def name(self) -> str:
        return self.config.name

    @contextlib.contextmanager
    def watch(self, conn: Connection) -> Iterator[None]:
        """Keep the camera awake while ``conn`` streams. A camera that was idle has only a stale
        frame in its slot: the stream starts after it, with a frame captured after it arrived."""
        capture = self.capture
        latest = capture.slot.latest
        if capture.idle and latest is not None:
            conn.last_seq = latest.seq
        with capture.watching():
            yield
