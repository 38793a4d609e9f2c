"""Hands each new frame to every viewer of a camera: one loop callback, one write per viewer.

A frame reaches the event loop once (``slot.py``); :meth:`Broadcast.on_frame` then walks the
camera's subscribers and writes the frame's bytes, framed once per frame for each kind of
connection (the payload by its writer, ``web/mjpeg.py`` or ``web/websocket.py``; the transport
framing by the server adapter, see ``wire.py``), straight to every connection that can take it
now and is due a frame. No task, future or ASGI message per viewer per frame: that machinery, not the
socket writes, is what cost a Python streamer twice a C one.

Bounded backlog, the mechanism (§4 of ``docs/interface.md``). Three layers could hold stale frames for a
client that stopped reading, and each is capped:

* the kernel send buffer: the listening socket sets ``TCP_NOTSENT_LOWAT`` (inherited by
  accepted sockets), so the kernel stops taking bytes once a few KiB are unsent, while the
  congestion window still grows for fast clients;
* the transport buffer: its high-water mark is 0 (``edge/server``), so any byte the kernel
  refused pauses the connection (:attr:`Wire.paused`), leaving at most the rest of one frame;
* the broadcast itself: a paused connection is skipped, and when it resumes it is handed the
  newest frame (:meth:`Broadcast.resumed`), never the ones it missed.

What a resuming client can receive that predates its resumption is therefore what its own
receive buffer and the path hold, plus at most one partly written frame and the kernel's
unsent low-water amount: under two frames for normal frame sizes.

A client that reads nothing at all keeps its slot, though, so a connection that stays paused
without progress for ``stall_timeout`` seconds is given up: otherwise a few hosts that open
streams and never read could hold every ``max_clients`` slot for ever.
"""

from __future__ import annotations

import asyncio
import math
import time

from prometheus_client import Histogram

from .connections import Connection, StreamKind, Totals
from .slot import Frame, FrameSlot, Framing
from .wire import Wire

# A per-client cap below this is no stream any more (one frame every 100 s); it also keeps
# the cap arithmetic finite for absurd values such as 5e-324.
MIN_FPS_CAP = 0.01
STALL_CHECK = 1.0  # seconds between looks at paused connections' progress


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


class Subscriber:
    """One stream's place in its camera's broadcast: the connection's settings and counters
    (its :class:`Connection`) and where its frames go."""

    __slots__ = ("conn", "wire", "framing", "totals", "held", "due", "ended", "_progress_at", "_left")

    def __init__(self, conn: Connection, wire: Wire, framing: Framing, totals: Totals) -> None:
        self.conn = conn
        self.wire = wire
        self.framing = framing  # a writer's function: also the key of its bytes in Frame.wire
        self.totals = totals
        self.held = False  # ack mode: the last frame sent is not acknowledged yet
        # time.monotonic() when a capped connection is next due a frame; 0.0: at the next frame
        # (no frame sent yet, or the client just changed its cap: the grid starts again).
        self.due = 0.0
        # Resolved by the broadcast when it gives up on the connection (stalled, write failed).
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._progress_at = 0.0
        self._left = 0

    def end(self, why: str) -> None:
        if not self.ended.done():
            self.ended.set_result(why)


class Broadcast:
    """A camera's subscribers, and the frame fan-out to them."""

    def __init__(
        self,
        slot: FrameSlot,
        camera_fps: float,
        stall_timeout: float,
        frame_age: dict[StreamKind, Histogram],
    ) -> None:
        self.slot = slot
        self.camera_fps = camera_fps
        self.stall_timeout = stall_timeout
        # Observed once per frame and kind, not per viewer: the age is the same for all of them.
        self.frame_age = frame_age
        self.subscribers: list[Subscriber] = []
        self._stall_timer: asyncio.TimerHandle | None = None
        slot.listen(self.on_frame)

    def add(self, sub: Subscriber) -> None:
        """Subscribe, and hand over the newest frame at once (a new viewer sees a picture now)."""
        self.subscribers.append(sub)
        sub.wire.on_resume = lambda: self.resumed(sub)
        if self._stall_timer is None:
            self._stall_timer = asyncio.get_running_loop().call_later(STALL_CHECK, self._check_stalls)
        self.kick(sub)

    def remove(self, sub: Subscriber) -> None:
        sub.wire.on_resume = None
        if sub in self.subscribers:
            self.subscribers.remove(sub)
        if not self.subscribers and self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def kick(self, sub: Subscriber) -> None:
        """Offer ``sub`` the newest frame now (it just subscribed, resumed, or acknowledged)."""
        frame = self.slot.latest
        if frame is not None and self.offer(sub, frame, time.monotonic()):
            self.frame_age[sub.conn.kind].observe(max(time.time() - frame.timestamp, 0.0))

    def resumed(self, sub: Subscriber) -> None:
        sub._progress_at = 0.0
        self.kick(sub)

    def on_frame(self, frame: Frame) -> None:
        """The hot path: every subscriber that is writable and due gets this frame."""
        if not self.subscribers:
            return
        now = time.monotonic()
        kinds: set[StreamKind] = set()
        for sub in self.subscribers:
            if self.offer(sub, frame, now):
                kinds.add(sub.conn.kind)
        if kinds:
            age = max(time.time() - frame.timestamp, 0.0)
            for kind in kinds:
                self.frame_age[kind].observe(age)

    def offer(self, sub: Subscriber, frame: Frame, now: float) -> bool:
        """Write ``frame`` to ``sub`` if it can take it and is due one; account for it."""
        conn = sub.conn
        wire = sub.wire
        if wire.paused or sub.held or frame.seq <= conn.last_seq:
            return False
        cap = conn.fps_cap
        # Half a camera period of slack so a cap of 15 on a 30 fps camera takes every second
        # frame instead of beating against capture jitter.
        if cap is not None and now < sub.due - 0.5 / self.camera_fps:
            return False
        if wire.closing():
            return False  # its stream notices the disconnect and unsubscribes
        data, counted = frame.framed(sub.framing)
        try:
            wire.write(data)
        except (RuntimeError, OSError):  # closed under us: the stream ends
            sub.end("gone")
            return False
        if conn.last_seq:
            # A drop is a frame the client would have had had it been ready. Without a cap that
            # is every frame in the gap. With one it is every slot of the cap's grid that went by
            # unserved since this send was due (the nearest slot is this send's), never more than
            # the frames in the gap: frames passed over for the cap itself are not drops, whether
            # or not the cap divides the camera's rate, whatever the capture jitter.
            skipped = frame.seq - conn.last_seq - 1
            if cap is not None:
                skipped = min(skipped, int((now - sub.due) * cap + 0.5)) if sub.due else 0
            if skipped > 0:
                conn.frames_dropped += skipped
                sub.totals.frames_dropped += skipped
        conn.last_seq = frame.seq
        conn.frames_sent += 1
        conn.bytes_sent += counted
        totals = sub.totals
        totals.frames_sent += 1
        totals.bytes_sent += counted
        if cap is not None:
            interval = 1.0 / cap
            # Keep to a grid that starts at the first frame sent, but bank at most half an
            # interval: after a late frame the next one comes no sooner than half an interval
            # later, so lateness never becomes a burst.
            sub.due = max(sub.due + interval, now + interval / 2) if sub.due else now + interval
        if conn.ack_mode:
            sub.held = True
        return True

    def _check_stalls(self) -> None:
        """Give up on connections paused for ``stall_timeout`` without progress. Progress is
        the transport's buffer shrinking, not a whole frame leaving: a client on a slow link
        that reads steadily may take longer than ``stall_timeout`` for one frame."""
        now = time.monotonic()
        for sub in self.subscribers:
            wire = sub.wire
            if not wire.paused:
                continue
            if sub._progress_at == 0.0:  # first look since it paused
                sub._progress_at, sub._left = wire.paused_at, wire.paused_left
            left = wire.buffered()
            if left < sub._left:
                sub._progress_at, sub._left = now, left
            if now - sub._progress_at >= self.stall_timeout:
                sub.end("stalled")
        self._stall_timer = asyncio.get_running_loop().call_later(STALL_CHECK, self._check_stalls)
