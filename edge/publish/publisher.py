"""A camera's ``publish:`` targets, fed from its capture (§10 of docs/interface.md).

Each unit the camera makes (or, for a JPEG camera, its encoder makes) is offered to every
target; a target only queues it. The camera is kept awake while it publishes (nobody may be
watching locally, but the media server's readers are), and a JPEG camera encodes only while at
least one target is connecting or publishing.
"""

from __future__ import annotations

import time
from typing import Any

from ..capture import Capture
from ..config import CameraConfig
from ..fanout.units import AccessUnit
from .target import Target


class CameraPublisher:
    def __init__(self, cam: CameraConfig, capture: Capture) -> None:
        self.capture = capture
        self.targets = [Target(cam.name, url, cam.fps, self._changed) for url in cam.publish]

    def start(self) -> None:
        """Starts each target's thread; nothing waits for a target to connect."""
        if not self.targets:
            return
        self.capture.unit_sinks.append(self._offer)
        self.capture.publishing = True
        self.capture.demand(jpeg=False)  # an idle camera wakes: the targets want frames now
        for target in self.targets:
            target.start()

    def request_stop(self) -> None:
        for target in self.targets:
            target.stop()
        self.capture.want_h264(False)

    def join(self, deadline: float) -> None:
        for target in self.targets:
            target.join(max(deadline - time.monotonic(), 0.0))

    def status(self) -> list[dict[str, Any]]:
        entries = [target.status() for target in self.targets]
        failed = self.capture.h264_out.error
        for entry in entries:
            if failed and entry["state"] == "connecting" and entry["error"] is None:
                # A JPEG camera whose encoder does not open: its targets wait for nothing else.
                entry["error"] = f"the camera's H.264 encoder failed: {failed}"
        return entries

    def _offer(self, unit: AccessUnit) -> None:
        for target in self.targets:
            target.offer(unit)

    def _changed(self) -> None:
        self.capture.want_h264(any(target.wants_units for target in self.targets))
