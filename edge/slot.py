"""The latest-frame slot: one capture thread publishes, any number of asyncio tasks read.

The slot holds exactly one frame. Readers never queue frames: a reader that was busy
asks for "anything newer than what I sent" and gets the newest, skipping the rest. That
is what keeps a slow viewer from slowing the camera or seeing a growing delay.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from dataclasses import dataclass, field

BOUNDARY = "edgeframe"
_WS_HEADER = struct.Struct(">Qd")


@dataclass(frozen=True, slots=True)
class Frame:
    """One encoded frame, with its wire forms built once in the capture thread.

    Building the MJPEG part and the WebSocket payload here, not per client, is the
    "encode once" rule applied to framing too: 100 viewers share these bytes.
    """

    seq: int
    timestamp: float
    jpeg: bytes
    placeholder: bool = False
    mjpeg_part: bytes = field(init=False, repr=False)
    ws_payload: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        head = b"Content-Type: image/jpeg\r\nContent-Length: %d\r\nX-Timestamp: %.6f\r\n\r\n" % (
            len(self.jpeg),
            self.timestamp,
        )
        tail = b"\r\n--" + BOUNDARY.encode() + b"\r\n"
        object.__setattr__(self, "mjpeg_part", head + self.jpeg + tail)
        object.__setattr__(self, "ws_payload", _WS_HEADER.pack(self.seq, self.timestamp) + self.jpeg)


class FrameSlot:
    """Thread-safe latest-frame holder with async waiting for a newer frame.

    Waiters share one future per loop; ``publish`` wakes them with a single
    ``call_soon_threadsafe`` instead of one per waiter, so the cost of a frame does not
    grow with the number of viewers on the capture side.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frame: Frame | None = None
        self._seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next: asyncio.Future[Frame] | None = None

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
        waiters, self._next = self._next, None
        if waiters is not None and not waiters.done():
            waiters.set_result(frame)

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
