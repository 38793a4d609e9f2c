"""Where frames come from, one module per kind of source, each registering itself
(``registry.py``): ``virtual.py``, ``device.py`` (V4L2; ``diagnose.py`` says why one does not
open), ``file.py``, ``url.py`` (FFmpeg), ``http.py`` (MJPEG and snapshot URLs), ``pipe.py`` (a
program's stdout); ``base.py`` is what they share, ``placeholder.py`` the NO SIGNAL picture."""

from . import device, file, http, pipe, url, virtual  # noqa: F401 (each registers its kind)
from .base import Captured, Pacer, Source, SourceError
from .placeholder import make_placeholder
from .registry import AUTO_DEVICE, make_source, register, resolve_auto

__all__ = [
    "AUTO_DEVICE",
    "Captured",
    "Pacer",
    "Source",
    "SourceError",
    "make_placeholder",
    "make_source",
    "register",
    "resolve_auto",
]
