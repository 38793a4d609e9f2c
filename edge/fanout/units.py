"""An H.264 camera's access units on their way from the capture thread to the event loop.

JPEG frames go through a latest-frame slot (``slot.py``): a reader that was busy takes the newest
frame and loses nothing it needs. An H.264 delta frame is useless without every frame since the
last key frame, so the :class:`UnitFeed` hands *every* access unit to the loop, in order (one
``call_soon_threadsafe`` per unit: 30 a second, whatever the number of viewers), and keeps the
units since the last key frame (the GOP cache): a new viewer gets them at once and starts from that
key frame instead of waiting up to a key-frame interval. Which viewer gets which unit (a viewer
that fell behind waits for the next key frame) is ``keyframes.py``'s.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..formats.fmp4 import TIMESCALE
from ..formats.h264 import Parameters
from .slot import Framing

#: The GOP cache's bound: a camera with a very long key-frame interval (or none) would otherwise
#: keep every unit since its last key frame. Beyond it new viewers wait for the next key frame.
MAX_GOP_BYTES = 16 * 1024 * 1024
STATS_WINDOW = 10.0  # seconds over which the bitrate and the key-frame interval are measured


@dataclass(frozen=True, slots=True)
class AccessUnit:
    """One frame of an H.264 camera: its NAL units in Annex-B, as the source gave them (with the
    SPS and PPS in front of a key frame that lacked them).

    ``pts`` and ``duration`` are in :data:`edge.formats.fmp4.TIMESCALE` ticks on the camera's own
    timeline (the capture times since the feed started), the same for every viewer, so an fMP4
    fragment is built once for all of them. ``wire`` caches the unit's bytes per framing, as
    :class:`edge.fanout.slot.Frame` does.
    """

    seq: int
    timestamp: float
    data: bytes
    key: bool
    params: Parameters
    pts: int = 0
    duration: int = 0
    wire: dict[Framing, tuple[bytes, int]] = field(default_factory=dict, repr=False, compare=False)

    def framed(self, framing: Framing) -> tuple[bytes, int]:
        data = self.wire.get(framing)
        if data is None:
            data = self.wire[framing] = framing(self)
        return data


@dataclass(frozen=True, slots=True)
class InitSegment:
    """What an fMP4 viewer needs before the key frame ``seq`` (its parameters' ``ftyp`` + ``moov``);
    framed once per parameter set for every such viewer."""

    seq: int
    timestamp: float
    params: Parameters
    wire: dict[Framing, tuple[bytes, int]] = field(default_factory=dict, repr=False, compare=False)

    def framed(self, framing: Framing) -> tuple[bytes, int]:
        data = self.wire.get(framing)
        if data is None:
            data = self.wire[framing] = framing(self)
        return data


UnitListener = Callable[[AccessUnit], None]


class UnitFeed:
    """Every access unit of one H.264 camera, from its capture thread to the event loop, plus the
    GOP cache (loop side) and the stream's measured figures (capture side)."""

    def __init__(self, fps: float, max_gop_bytes: int = MAX_GOP_BYTES) -> None:
        self.fps = fps
        self.max_gop_bytes = max_gop_bytes
        self._lock = threading.Lock()
        self._seq = 0
        self._last_time: float | None = None
        self._period = 1.0 / fps
        self._pts = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: list[UnitListener] = []
        self._gop: list[AccessUnit] = []  # loop side: the units since the last key frame
        self._gop_bytes = 0
        self._latest: AccessUnit | None = None
        self.first = asyncio.Event()  # set by the first unit (start-up waits for it or a frame)
        self._inits: dict[Parameters, InitSegment] = {}
        # Capture side: (time, size, key) of recent units, for the bitrate and key interval.
        self._recent: collections.deque[tuple[float, int, bool]] = collections.deque(maxlen=4096)
        self.params: Parameters | None = None  # the parameters of the newest unit
        self.units = 0
        self.bytes = 0

    # -- capture thread ----------------------------------------------------------------

    def make(self, data: bytes, key: bool, params: Parameters, timestamp: float | None = None) -> AccessUnit:
        """The next unit of the stream (numbered, on the camera's timeline).

        Each unit's decode time is where the previous one ended and its duration the camera's
        measured frame period: capture times jitter, and a sample that overlaps the one before
        makes an MSE player drop everything up to the next key frame. The capture time itself
        travels in every message's header."""
        now = time.time() if timestamp is None else timestamp
        with self._lock:
            self._seq += 1
            seq = self._seq
            nominal = 1.0 / self.fps
            if self._last_time is not None:
                gap = min(max(now - self._last_time, nominal / 4), nominal * 4)
                self._period += (gap - self._period) / 16  # a slow average: jitter, not the rate
            self._last_time = now
            duration = max(1, round(self._period * TIMESCALE))
            pts, self._pts = self._pts, self._pts + duration
        return AccessUnit(seq, now, data, key, params, pts, duration)

    def publish(self, unit: AccessUnit) -> None:
        """Called from the capture thread for every unit; never blocks on readers."""
        now = time.monotonic()
        self._recent.append((now, len(unit.data), unit.key))
        self.params = unit.params
        self.units += 1
        self.bytes += len(unit.data)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._deliver, unit)
            except RuntimeError:  # loop closed between the check and the call
                pass

    def restart(self) -> None:
        """The source opened again, or paused (a paused source's GOP is stale by the time it
        resumes): the next key frame starts a new GOP. Called from the capture thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._forget)
            except RuntimeError:
                pass

    # -- event loop ----------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def listen(self, listener: UnitListener) -> None:
        self._listeners.append(listener)

    @property
    def latest(self) -> AccessUnit | None:
        return self._latest

    @property
    def gop(self) -> list[AccessUnit]:
        """The units from the last key frame to the newest (empty when there is no usable key
        frame: none yet, or the GOP outgrew the cache)."""
        return list(self._gop)

    def init_segment(self, unit: AccessUnit) -> InitSegment:
        """The fMP4 initialization segment for ``unit``'s parameters (one per parameter set)."""
        init = self._inits.get(unit.params)
        if init is None:
            if len(self._inits) > 8:  # parameter sets of a source long gone
                self._inits.clear()
            init = self._inits[unit.params] = InitSegment(unit.seq, unit.timestamp, unit.params)
        return init

    def _forget(self) -> None:
        self._gop, self._gop_bytes = [], 0

    def _deliver(self, unit: AccessUnit) -> None:
        if unit.key:
            self._gop, self._gop_bytes = [unit], len(unit.data)
        elif self._gop and self._gop_bytes + len(unit.data) <= self.max_gop_bytes:
            self._gop.append(unit)
            self._gop_bytes += len(unit.data)
        else:
            self._gop, self._gop_bytes = [], 0
        self._latest = unit
        self.first.set()
        for listener in self._listeners:
            listener(unit)

    # -- status ----------------------------------------------------------------------------

    def measured(self) -> tuple[float | None, float]:
        """(the key-frame interval in seconds, None until two key frames were seen; the bitrate in
        kbit/s), over the last :data:`STATS_WINDOW` seconds."""
        now = time.monotonic()
        recent = [r for r in list(self._recent) if now - r[0] <= STATS_WINDOW]
        if not recent:
            return None, 0.0
        keys = [t for t, _, key in recent if key]
        interval = (keys[-1] - keys[0]) / (len(keys) - 1) if len(keys) >= 2 else None
        span = max(now - recent[0][0], 1.0)
        kbps = sum(size for _, size, _ in recent) * 8 / span / 1000
        return interval, kbps
