"""Config files for the servers the tests start (the YAML side of edge/config/).

A camera entry's rate and quality default to `edge.config.CameraConfig`'s own defaults, so the
suite follows the server when they change instead of keeping a copy; only the size is the
suite's choice (320x240, a quarter of the default, to keep two cores free for the tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from edge.config import CameraConfig

CAMERA_DEFAULTS = CameraConfig(name="cam0")
TEST_SIZE = (320, 240)


def virtual_cam(
    name: str = "cam0",
    width: int = TEST_SIZE[0],
    height: int = TEST_SIZE[1],
    fps: float = CAMERA_DEFAULTS.fps,
    quality: int = CAMERA_DEFAULTS.quality,
    source: str | int = "virtual",
) -> dict[str, Any]:
    """A camera entry of the config file (§2 of docs/interface.md): the virtual camera unless
    `source` says otherwise."""
    return {
        "name": name,
        "source": source,
        "width": width,
        "height": height,
        "fps": fps,
        "quality": quality,
    }


def write_config(
    path: Path,
    cameras: list[dict[str, Any]],
    server: dict[str, Any] | None = None,
) -> Path:
    """Write a YAML config file: a `server` section when given, then `cameras`."""
    doc: dict[str, Any] = {}
    if server:
        doc["server"] = dict(server)
    doc["cameras"] = cameras
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
