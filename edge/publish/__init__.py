"""Pushing a camera's H.264 to media servers (§10 of docs/interface.md): a thread per target
(``target.py``) with its own queue, PyAV's muxers writing into memory (``muxer.py``), RTMP and
RTSP sessions (``rtmp.py``, ``rtsp.py``) over connections whose every wait has a deadline
(``link.py``), and a camera's targets together (``publisher.py``)."""

from .publisher import CameraPublisher
from .target import Target, TargetState

__all__ = ["CameraPublisher", "Target", "TargetState"]
