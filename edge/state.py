"""What the running app knows: its config, cameras, open streams and metrics.

One object, built by the app factory and shared by the endpoints, instead of module
globals, so two apps (two test servers) can live in one process.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from .broadcast import Broadcast
from .capture import Capture
from .config import CameraConfig, Config
from .connections import Connection, Registry, StreamKind
from .metrics import Metrics


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


@dataclass
class EdgeState:
    config: Config
    cameras: dict[str, Camera]
    registry: Registry
    metrics: Metrics
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def build(cls, config: Config) -> EdgeState:
        metrics = Metrics()
        cameras = {}
        for cam in config.cameras:
            capture = Capture(cam, on_encode=metrics.encode_seconds.labels(cam.name).observe)
            ages = {kind: metrics.frame_age.labels(cam.name, kind.value) for kind in StreamKind}
            broadcast = Broadcast(capture.slot, cam.fps, config.server.stall_timeout, ages)
            cameras[cam.name] = Camera(cam, capture, broadcast)
        registry = Registry(config.server.max_clients, config.server.max_streams_per_address)
        state = cls(config, cameras, registry, metrics)
        metrics.bind(state)
        return state

    def camera(self, name: str | None = None) -> Camera | None:
        """The named camera, or the first (default) one when ``name`` is ``None``."""
        if name is None:
            return next(iter(self.cameras.values()))
        return self.cameras.get(name)
