"""What the running app knows: its config, cameras, open streams and metrics.

One object, built by the app factory and shared by the endpoints, instead of module
globals, so two apps (two test servers) can live in one process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..capture import Capture
from ..config import Config
from ..fanout.broadcast import Broadcast
from ..fanout.connections import Registry, StreamKind
from ..fanout.keyframes import KeyFrameBroadcast
from ..publish import CameraPublisher
from .camera import Camera
from .metrics import Metrics


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
            units = KeyFrameBroadcast(capture.units, config.server.stall_timeout, ages)
            cameras[cam.name] = Camera(cam, capture, broadcast, units, CameraPublisher(cam, capture))
        registry = Registry(config.server.max_clients, config.server.max_streams_per_address)
        state = cls(config, cameras, registry, metrics)
        metrics.bind(cameras, registry)
        return state

    def camera(self, name: str | None = None) -> Camera | None:
        """The named camera, or the first (default) one when ``name`` is ``None``."""
        if name is None:
            return next(iter(self.cameras.values()))
        return self.cameras.get(name)
