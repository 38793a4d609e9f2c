"""Which class serves which kind of source: each kind's module registers itself (as go2rtc's
``internal/streams`` does), and the capture thread asks for a source by its parsed spec."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from ..config import CameraConfig, SourceKind, SourceSpec
from .base import Source, SourceError

log = logging.getLogger("edge.sources")

AUTO_DEVICE = "/dev/video0"
_KINDS: dict[SourceKind, type[Source]] = {}
S = TypeVar("S", bound=type[Source])


def register(kind: SourceKind) -> Callable[[S], S]:
    """Class decorator: ``kind`` sources are made by this class."""

    def add(cls: S) -> S:
        if kind in _KINDS:
            raise RuntimeError(f"source kind {kind} registered twice ({_KINDS[kind].__name__}, {cls.__name__})")
        cls.kind = kind
        _KINDS[kind] = cls
        return cls

    return add


def make_source(cam: CameraConfig, stop: threading.Event, spec: SourceSpec | None = None) -> Source:
    """The source for ``spec`` (default: the camera's own); ``auto`` is resolved by :func:`resolve_auto`."""
    spec = spec or cam.spec
    cls = _KINDS.get(spec.kind)
    if cls is None:
        raise SourceError(f"no source can read {spec.kind} sources")
    return cls(cam, stop, spec)


def resolve_auto(cam: CameraConfig, stop: threading.Event) -> tuple[Source, str | None]:
    """``auto``: the default device if it opens now, else the virtual camera, with the reason
    the device was not used."""
    device = make_source(cam, stop, SourceSpec.parse(AUTO_DEVICE))
    try:
        device.open()
    except SourceError as exc:
        reason = str(exc)
        log.warning("%s: not using %s: %s; using the virtual camera (test pattern)", cam.name, AUTO_DEVICE, reason)
        virtual = make_source(cam, stop, SourceSpec.parse("virtual"))
        virtual.open()
        return virtual, reason
    log.info("%s: using %s", cam.name, AUTO_DEVICE)
    return device, None
