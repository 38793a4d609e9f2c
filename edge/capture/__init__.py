"""From a source to the frame slot: the camera's thread (``capture.py``) and what it does to
each frame on the way (``process.py``)."""

from .capture import Capture, SourceFactory, State
from .process import FrameProcessor

__all__ = ["Capture", "FrameProcessor", "SourceFactory", "State"]
