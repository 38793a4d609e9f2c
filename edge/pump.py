"""Choosing the next frame for one connection: the part MJPEG and WebSocket share.

Bounded backlog, the mechanism (contract §4): a frame is chosen only once the connection
can take it. Three layers could otherwise hold stale frames for a client that stopped
reading, and each is capped:

* the kernel send buffer: the listening socket sets ``TCP_NOTSENT_LOWAT`` (inherited by
  accepted sockets), so ``send()`` stops accepting once a few KiB are unsent, while the
  congestion window still grows for fast clients;
* the asyncio transport buffer: its high-water mark is 0 (``server.py``), so any byte
  the kernel refused pauses writing, leaving at most the rest of one frame there;
* the server's ``send()``, which waits for drain *before* writing the message it was
  handed: :meth:`FramePump.next` awaits writability first and only then picks the
  newest frame, so the frame that goes out is fresh when the client reads again.

What a resuming client can receive that predates its resumption is therefore what its
own receive buffer and the path hold, plus at most one partly written frame and the
kernel's unsent low-water amount: under two frames for normal frame sizes.

A client that reads nothing at all keeps its slot, though, so a connection that stays
unwritable for ``stall_timeout`` seconds is given up (:class:`Stalled`): otherwise a few
hosts that open streams and never read could hold every ``max_clients`` slot for ever.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import Histogram
from starlette.types import Scope

from .connections import Connection, Totals
from .slot import Frame, FrameSlot

Drain = Callable[[], Awaitable[object]]
# A per-client cap below this is no stream any more (one frame every 100 s); it also keeps
# the cap arithmetic finite for absurd values such as 5e-324.
MIN_FPS_CAP = 0.01
STALL_CHECK = 1.0  # seconds between looks at a stalled connection's progress
FLOW_EXTENSION = "edge.flow"


@dataclass(frozen=True)
class Flow:
    """What ``server.py`` puts in the ASGI scope so endpoints can see the transport's state.

    ``drain`` returns once the transport buffer is empty; ``abort`` drops a connection
    whose client stopped reading (a graceful close would wait for it forever); ``writable``
    says without waiting whether ``drain`` would return at once; ``buffered`` how much is
    still waiting to be sent.
    """

    drain: Drain
    abort: Callable[[], None]
    writable: Callable[[], bool]
    buffered: Callable[[], int]  # bytes waiting in the transport: shrinks while the client reads


class Stalled(Exception):
    """The client has read nothing for ``stall_timeout`` seconds."""


def fps_cap_error(fps: float, camera_fps: float) -> str | None:
    """Why ``fps`` is no valid per-client cap (query ``fps=`` or WebSocket settings), or ``None``."""
    try:
        value = float(fps)  # a JSON integer can have hundreds of digits
    except OverflowError:
        value = math.inf
    if not math.isfinite(value) or not MIN_FPS_CAP <= value <= camera_fps:
        shown = f"{value:g}" if math.isfinite(value) else "a number out of range"
        return f"must be between {MIN_FPS_CAP:g} and the camera's {camera_fps:g} fps, got {shown}"
    return None


def flow_of(scope: Scope) -> Flow | None:
    """The connection's :class:`Flow`, or ``None`` under a server that does not provide it."""
    flow = scope.get("extensions", {}).get(FLOW_EXTENSION)
    return flow if isinstance(flow, Flow) else None


class FramePump:
    """Per-connection frame selection: writability, rate cap, newest frame, counters."""

    def __init__(
        self,
        conn: Connection,
        slot: FrameSlot,
        camera_fps: float,
        flow: Flow | None,
        totals: Totals,
        frame_age: Histogram,
        stall_timeout: float = 60.0,
    ) -> None:
        self.conn = conn
        self.slot = slot
        self.camera_fps = camera_fps
        self.flow = flow
        self.stall_timeout = stall_timeout
        self.totals = totals
        self.frame_age = frame_age
        self._due = 0.0  # loop time when a capped connection is next due a frame (see next())

    async def next(self) -> Frame:
        """Wait until the client can take a frame and one is due, then return the newest.

        Raises :class:`Stalled` when the connection stays unwritable for ``stall_timeout``.
        """
        flow = self.flow
        if flow is not None and not flow.writable():
            await self._drain_or_stall(flow)
        cap = self.conn.fps_cap
        if cap is not None:
            loop = asyncio.get_running_loop()
            # Half a camera period of slack so a cap of 15 on a 30 fps camera takes every
            # second frame instead of beating against capture jitter.
            delay = self._due - loop.time() - 0.5 / self.camera_fps
            if delay > 0:
                await asyncio.sleep(delay)
        return await self.slot.wait_newer(self.conn.last_seq)

    async def _drain_or_stall(self, flow: Flow) -> None:
        """Wait until writable; :class:`Stalled` after ``stall_timeout`` without progress.

        Progress is the transport's buffer shrinking, not the whole frame leaving: a client on
        a slow link that reads steadily may take longer than ``stall_timeout`` for one frame.
        """
        loop = asyncio.get_running_loop()
        check = min(self.stall_timeout, STALL_CHECK)
        deadline = loop.time() + self.stall_timeout
        left = flow.buffered()
        while True:
            try:
                async with asyncio.timeout(min(check, max(deadline - loop.time(), 0.0))):
                    await flow.drain()
                return
            except TimeoutError:
                pass
            now_left = flow.buffered()
            if now_left < left:
                left, deadline = now_left, loop.time() + self.stall_timeout
            elif loop.time() >= deadline:
                raise Stalled(f"the client read nothing for {self.stall_timeout:g} s") from None

    def sent(self, frame: Frame, nbytes: int) -> None:
        """Account for a frame handed to the transport."""
        conn = self.conn
        if conn.last_seq:
            skipped = frame.seq - conn.last_seq - 1
            if conn.fps_cap is not None:
                # Frames skipped to honour the client's own cap are not drops.
                skipped -= max(round(self.camera_fps / conn.fps_cap) - 1, 0)
            if skipped > 0:
                conn.frames_dropped += skipped
                self.totals.frames_dropped += skipped
        conn.last_seq = frame.seq
        conn.frames_sent += 1
        conn.bytes_sent += nbytes
        self.totals.frames_sent += 1
        self.totals.bytes_sent += nbytes
        self.frame_age.observe(max(time.time() - frame.timestamp, 0.0))
        if conn.fps_cap is not None:
            now = asyncio.get_running_loop().time()
            interval = 1.0 / conn.fps_cap
            # Keep to a grid, but bank at most half an interval: after a late frame the next one
            # comes no sooner than half an interval later, so lateness never becomes a burst.
            self._due = max(self._due + interval, now + interval / 2)
