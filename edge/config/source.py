"""A camera's ``source``, parsed once: what kind of thing it names and what to open."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass

PIPE_PREFIX = "pipe:"


class SourceKind(enum.StrEnum):
    """What a camera's ``source`` names; ``edge.sources`` has one module per kind."""

    AUTO = "auto"  # /dev/video0 if it opens, else the virtual camera
    VIRTUAL = "virtual"
    DEVICE = "device"  # a V4L2 node, by path or index
    FILE = "file"  # a video file, played in a loop
    HTTP = "http"  # http:// or https://: MJPEG read natively, anything else through FFmpeg
    URL = "url"  # any other URL (rtsp://, rtmp://, ...): FFmpeg
    PIPE = "pipe"  # pipe:COMMAND, whose stdout is an MJPEG byte stream


@dataclass(frozen=True)
class SourceSpec:
    """A camera's ``source``, parsed: its kind, what to open (a device index or path, a file path,
    a URL, a command line without ``pipe:``) and the text as written (what is shown, masked)."""

    kind: SourceKind
    target: str | int
    text: str

    @classmethod
    def parse(cls, value: str | int) -> SourceSpec:
        if isinstance(value, int):
            return cls(SourceKind.DEVICE, value, str(value))
        text = value.strip()
        if text.isdigit():
            return cls(SourceKind.DEVICE, int(text), text)
        if text in (SourceKind.AUTO, SourceKind.VIRTUAL):
            return cls(SourceKind(text), text, text)
        if text.startswith(PIPE_PREFIX):
            return cls(SourceKind.PIPE, text[len(PIPE_PREFIX) :], text)
        if text.startswith("/dev/"):
            return cls(SourceKind.DEVICE, text, text)
        if text.lower().startswith(("http://", "https://")):
            return cls(SourceKind.HTTP, text, text)
        if "://" in text:
            return cls(SourceKind.URL, text, text)
        return cls(SourceKind.FILE, text, text)

    @property
    def device(self) -> str | None:
        """What identifies the V4L2 device behind the source (``/dev/video0``, ``0`` and a by-id
        link to it are the same camera), or ``None`` for sources that are not devices."""
        if self.kind is SourceKind.AUTO:
            return "/dev/video0"
        if self.kind is not SourceKind.DEVICE:
            return None
        if isinstance(self.target, int):
            return f"/dev/video{self.target}"
        return os.path.realpath(self.target)
