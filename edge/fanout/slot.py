"""The latest-frame slot: one capture thread publishes, the event loop hands the frame on.

The slot holds exactly one frame. Nothing queues frames for a reader: a reader that was
busy gets the newest frame when it is ready again, skipping the rest. That is what keeps a
slow viewer from slowing the camera or seeing a growing delay.

A frame is published once per camera and reaches the event loop with one
``call_soon_threadsafe``; there it goes to the slot's listeners (the camera's broadcast,
``broadcast.py``) and to the tasks waiting for a newer frame (snapshots of an idle camera).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Frame:
    """One encoded frame.

    ``wire`` caches the frame's bytes as each kind of connection frames them (an MJPEG part in
    an HTTP/1.1 chunk, a WebSocket message): built by the first connection that needs them, on
    the event loop, and shared by every other connection. The payload formats live with their
    writers (``web/``), the transport framing with the server adapter (``server/wire.py``).
    """

    seq: int
    timestamp: float
    jpeg: bytes
    placeholder: bool = False
    wire: dict[Framing, tuple[bytes, int]] = field(default_factory=dict, repr=False, compare=False)

    def framed(self, framing: Framing) -> tuple[bytes, int]:
        """``framing(self)``, built on first use and shared: (bytes to write, payload size)."""
        data = self.wire.get(framing)
        if data is None:
            data = self.wire[framing] = framing(self)
        return data


# What the broadcasts send is a JPEG `Frame` or an H.264 `AccessUnit` (``units.py``); each
# writer's payload function takes the one its stream carries, so these are typed loosely.
#: A frame as one kind of connection sends it: (the bytes to write, the payload's size).
Framing = Callable[[Any], tuple[bytes, int]]
#: A writer's payload for a frame (a multipart part, a WebSocket message's body).
Payload = Callable[[Any], bytes]


FrameListener = Callable[[Frame], None]


class FrameSlot:
    """Thread-safe latest-frame holder that tells the event loop about each new frame.

    Waiters share one future; ``publish`` costs the capture thread one
    ``call_soon_threadsafe`` whatever the number of viewers.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frame: Frame | None = None
        self._seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next: asyncio.Future[Frame] | None = None
        self._listeners: list[FrameListener] = []

    @property
    def latest(self) -> Frame | None:
        return self._frame

    def next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind the slot to the serving loop (called from that loop at start-up)."""
        self._loop = loop

    def listen(self, listener: FrameListener) -> None:
        """Call ``listener(frame)`` on the event loop for every new frame (the newest only, when
        several arrive before the loop gets to them)."""
        self._listeners.append(listener)

    def publish(self, frame: Frame) -> None:
        """Called from the capture thread; never blocks on readers."""
        with self._lock:
            self._frame = frame
            loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._wake, frame)
            except RuntimeError:  # loop closed between the check and the call
                pass

    def _wake(self, frame: Frame) -> None:
        if frame is not self._frame:
            return  # a newer frame is already on its way: nobody needs this one any more
        waiters, self._next = self._next, None
        if waiters is not None and not waiters.done():
            waiters.set_result(frame)
        for listener in self._listeners:
            listener(frame)

    async def wait_newer(self, seq: int) -> Frame:
        """Return the newest frame whose sequence number is greater than ``seq``."""
        frame = self._frame
        while frame is None or frame.seq <= seq:
            if self._next is None:
                self._next = asyncio.get_running_loop().create_future()
            # shield: one reader giving up must not cancel the future the others share.
            frame = await asyncio.shield(self._next)
        # The slot may have moved on while this task was waiting to be scheduled.
        latest = self._frame
        return latest if latest is not None and latest.seq > frame.seq else frame
