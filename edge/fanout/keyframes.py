"""Hands each access unit of an H.264 camera to every H.264 viewer: the broadcast for units.

The same machinery as JPEG's ``broadcast.py`` (one write per viewer per unit, framed once for all
viewers of a kind, paused connections skipped, stalled ones given up), with one rule on top: a
viewer only ever gets a delta frame whose references it got. A viewer is *in sync* from a key
frame on; when it misses a unit (its connection was paused), it is out of sync until the next key
frame, which is also where the §4 bound on what it receives from before it resumed starts again.

A new viewer is sent the GOP cache at once (the units from the last key frame to the newest,
``units.py``), so its decoder has a picture within one write instead of waiting for the next key
frame. An fMP4 viewer gets the initialization segment before its first key frame, and again when
the parameters change (a new resolution); an Annex-B viewer finds the new SPS in the key frame.

Per-client caps and ack mode (§5) do not apply: skipping a delta frame breaks every frame after
it up to the next key frame.
"""

from __future__ import annotations

import time

from prometheus_client import Histogram

from ..formats.h264 import Parameters
from .broadcast import Broadcast, Subscriber
from .connections import Connection, StreamKind, Totals
from .slot import Framing
from .units import AccessUnit, UnitFeed
from .wire import Wire


class UnitSubscriber(Subscriber):
    """An H.264 viewer: in sync or waiting for a key frame; an fMP4 one also knows the parameters
    its initialization segment described."""

    __slots__ = ("synced", "params", "init_framing")

    def __init__(
        self, conn: Connection, wire: Wire, framing: Framing, totals: Totals, init_framing: Framing | None = None
    ) -> None:
        super().__init__(conn, wire, framing, totals)
        self.synced = False
        self.params: Parameters | None = None
        self.init_framing = init_framing  # fMP4: how its initialization segments are framed


class KeyFrameBroadcast(Broadcast):
    """An H.264 camera's viewers, and the unit fan-out to them."""

    def __init__(self, feed: UnitFeed, stall_timeout: float, frame_age: dict[StreamKind, Histogram]) -> None:
        self.feed = feed
        super().__init__(feed, feed.fps, stall_timeout, frame_age)  # type: ignore[arg-type]

    def kick(self, sub: Subscriber) -> None:
        """A new viewer: the GOP cache, from its key frame. (A resumed one waits for the next key
        frame; acks and caps do not apply.)"""
        assert isinstance(sub, UnitSubscriber)
        if sub.conn.frames_sent or sub.synced:
            return
        now = time.monotonic()
        gop = self.feed.gop
        sent = 0
        for unit in gop:
            if not self.offer(sub, unit, now):
                break
            sent += 1
        if sent:
            self.frame_age[sub.conn.kind].observe(max(time.time() - gop[0].timestamp, 0.0))

    def resumed(self, sub: Subscriber) -> None:
        sub._progress_at = 0.0

    def offer(self, sub: Subscriber, frame: object, now: float) -> bool:
        assert isinstance(sub, UnitSubscriber) and isinstance(frame, AccessUnit)
        unit = frame
        conn = sub.conn
        wire = sub.wire
        if unit.seq <= conn.last_seq:
            return False
        if wire.paused:
            if sub.synced:
                sub.synced = False  # it misses this unit: nothing decodes until the next key frame
            if conn.frames_sent:
                conn.frames_dropped += 1
                sub.totals.frames_dropped += 1
            return False
        if not sub.synced:
            if not unit.key:
                if conn.frames_sent:
                    conn.frames_dropped += 1
                    sub.totals.frames_dropped += 1
                return False
        if wire.closing():
            return False
        counted = 0
        try:
            if sub.init_framing is not None and sub.params != unit.params:
                if not unit.key:  # parameters changed without a key frame: wait for one
                    sub.synced = False
                    return False
                data, size = self.feed.init_segment(unit).framed(sub.init_framing)
                wire.write(data)
                counted += size
                sub.params = unit.params
            data, size = unit.framed(sub.framing)
            wire.write(data)
            counted += size
        except (RuntimeError, OSError):  # closed under us: the stream ends
            sub.end("gone")
            return False
        sub.synced = True
        conn.last_seq = unit.seq
        conn.frames_sent += 1
        conn.bytes_sent += counted
        totals = sub.totals
        totals.frames_sent += 1
        totals.bytes_sent += counted
        return True
