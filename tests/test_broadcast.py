"""The broadcast and the frame slot in process: unit tests of the frame path's core objects, driven
directly (no server, no socket); the asynchronous ones run on pytest-asyncio's event loop.
(`test_broadcast_server.py` checks the broadcast against a real server.)

* ``FrameSlot``: newest wins, many waiters share one wake-up, listeners hear each frame once
  (and only the newest when several arrive before the loop runs).
* ``Broadcast``: who gets a frame (writable, due, not held for an ack, not sent already), the
  drop arithmetic (a gap is a drop, frames skipped for the client's own cap are not), the cap's
  grid, the wire bytes built once per frame and shared, resume and stall handling.
* ``parse_message`` and ``fps_cap_error``: the WebSocket client messages and the cap's bounds.
* ``_Pacer``: the virtual camera's and files' clock.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import pytest
from prometheus_client import CollectorRegistry, Histogram

from edge.fanout.broadcast import STALL_CHECK, Broadcast, Subscriber, fps_cap_error
from edge.fanout.connections import Connection, StreamKind, Totals
from edge.fanout.slot import Frame, FrameSlot
from edge.server.wire import chunked, close_delimited, ws_binary
from edge.sources import Pacer as _Pacer
from edge.web import mjpeg, websocket
from edge.web.websocket import parse_message

# Each kind of connection's framing as the server adapter makes it (edge/server/wire.py).
chunk = chunked(mjpeg.part)  # an MJPEG part in an HTTP/1.1 chunk
part = close_delimited(mjpeg.part)  # an MJPEG part in a close-delimited HTTP/1.0 body
message = ws_binary(websocket.payload)  # a WebSocket binary message

CAMERA_FPS = 30.0


def frame(seq: int, jpeg: bytes = b"\xff\xd8jpeg\xff\xd9") -> Frame:
    return Frame(seq, 1_700_000_000.0 + seq / CAMERA_FPS, jpeg)


@dataclass
class FakeWire:
    """A transport that records writes; ``paused`` as the protocol would set it."""

    paused: bool = False
    paused_at: float = 0.0
    paused_left: int = 0
    left: int = 0  # bytes still buffered (shrinks while a stalled client reads)
    writes: list[bytes] = field(default_factory=list)
    closed: bool = False
    aborted: bool = False
    on_resume: object = None

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def closing(self) -> bool:
        return self.closed

    def buffered(self) -> int:
        return self.left

    def abort(self) -> None:
        self.aborted = True

    def resume(self) -> None:
        self.paused = False
        if callable(self.on_resume):
            self.on_resume()


def histograms() -> dict[StreamKind, Histogram]:
    h = Histogram("age", "age", ["kind"], registry=CollectorRegistry())
    return {kind: h.labels(kind.value) for kind in StreamKind}


def subscribe(
    broadcast: Broadcast, kind: StreamKind = StreamKind.MJPEG, fps_cap: float | None = None
) -> tuple[Subscriber, FakeWire, Totals]:
    conn = Connection(id="c1", kind=kind, camera="cam0", remote="127.0.0.1:1", fps_cap=fps_cap)
    wire, totals = FakeWire(), Totals()
    sub = Subscriber(conn, wire, chunk if kind is StreamKind.MJPEG else message, totals)
    broadcast.add(sub)
    return sub, wire, totals


# -- FrameSlot ----------------------------------------------------------------------------------


async def test_slot_wakes_many_waiters_with_the_newest_frame() -> None:
    slot = FrameSlot()
    slot.attach(asyncio.get_running_loop())
    heard: list[int] = []
    slot.listen(lambda f: heard.append(f.seq))
    waiters = [asyncio.ensure_future(slot.wait_newer(0)) for _ in range(50)]
    await asyncio.sleep(0)
    # Three frames published (from another thread) before the loop runs: waiters and the
    # listener get the newest, and the listener hears it once, not three times.
    publisher = threading.Thread(target=lambda: [slot.publish(frame(s)) for s in (1, 2, 3)])
    publisher.start()
    publisher.join()
    done = await asyncio.wait_for(asyncio.gather(*waiters), 2)
    assert [f.seq for f in done] == [3] * 50
    assert heard == [3]


async def test_wait_newer_returns_the_newest_not_the_one_it_was_woken_with() -> None:
    slot = FrameSlot()
    slot.attach(asyncio.get_running_loop())
    waiter = asyncio.ensure_future(slot.wait_newer(0))
    await asyncio.sleep(0)
    slot.publish(frame(1))
    await asyncio.sleep(0)  # the loop wakes the waiter with frame 1 ...
    slot._frame = frame(2)  # ... and frame 2 lands (its own wake still queued) before the waiter runs
    assert (await asyncio.wait_for(waiter, 2)).seq == 2


async def test_wait_newer_returns_at_once_when_the_slot_is_ahead() -> None:
    slot = FrameSlot()
    slot.attach(asyncio.get_running_loop())
    slot.publish(frame(5))
    assert (await asyncio.wait_for(slot.wait_newer(4), 1)).seq == 5


# -- Broadcast ----------------------------------------------------------------------------------


def make_broadcast(stall_timeout: float = 60.0) -> tuple[FrameSlot, Broadcast]:
    """A slot and its broadcast on the running loop (call it from an async test)."""
    slot = FrameSlot()
    slot.attach(asyncio.get_running_loop())
    return slot, Broadcast(slot, CAMERA_FPS, stall_timeout, histograms())


async def test_new_subscriber_gets_the_latest_frame_at_once() -> None:
    slot, broadcast = make_broadcast()
    slot._frame = frame(7)
    _, wire, _ = subscribe(broadcast)
    assert wire.writes == [chunk(frame(7))[0]]


async def test_frame_bytes_are_built_once_and_shared() -> None:
    _, broadcast = make_broadcast()
    wires = [subscribe(broadcast)[1] for _ in range(5)] + [subscribe(broadcast, StreamKind.WEBSOCKET)[1]]
    f = frame(1)
    broadcast.on_frame(f)
    assert set(f.wire) == {chunk, message}  # once per kind of connection
    mjpeg = [w.writes[0] for w in wires[:5]]
    assert all(data is mjpeg[0] for data in mjpeg), "every MJPEG viewer writes the same bytes object"
    assert mjpeg[0].startswith(b"%x\r\nContent-Type: image/jpeg\r\n" % part(frame(1))[1])
    assert mjpeg[0].endswith(b"\r\n--edgeframe\r\n\r\n")
    ws = wires[5].writes[0]
    assert ws[0] == 0x82 and ws[1] == 16 + len(frame(1).jpeg) and ws[2:10] == (1).to_bytes(8, "big")


async def test_paused_subscriber_is_skipped_and_gets_the_newest_when_it_resumes() -> None:
    slot, broadcast = make_broadcast()
    sub, wire, totals = subscribe(broadcast)
    broadcast.on_frame(frame(1))
    wire.paused = True
    for seq in (2, 3, 4):
        slot._frame = frame(seq)
        broadcast.on_frame(slot._frame)
    assert len(wire.writes) == 1, "nothing is written to a paused connection"
    wire.resume()
    conn = sub.conn
    assert [w for w in wire.writes] == [chunk(frame(1))[0], chunk(frame(4))[0]]
    assert conn.last_seq == 4 and conn.frames_sent == 2
    assert conn.frames_dropped == 2 and totals.frames_dropped == 2, "frames 2 and 3 were skipped: two drops"
    assert conn.bytes_sent == part(frame(1))[1] + part(frame(4))[1] == totals.bytes_sent


# Clock origins that once put a frame exactly on the cap's boundary (CI failed on such a float).
CLOCK_STARTS = (0.0, 1796065360.4834507 % 1e5, 12345.678901, 987654.3210987)


@pytest.mark.parametrize("start", CLOCK_STARTS)
@pytest.mark.parametrize(("cap", "expected"), [(10.0, 10), (15.0, 15), (12.0, 12), (7.0, 7), (29.0, 29)])
async def test_frames_skipped_for_the_clients_own_cap_are_not_drops(start: float, cap: float, expected: int) -> None:
    _, broadcast = make_broadcast()
    sub, wire, _ = subscribe(broadcast, fps_cap=cap)
    for seq in range(1, 31):  # one second of frames at the camera's pace, on a fake clock
        broadcast.offer(sub, frame(seq), start + seq / CAMERA_FPS)
    assert abs(len(wire.writes) - expected) <= 1, f"a cap of {cap} on 30 fps sent {len(wire.writes)} frames in a second"
    assert sub.conn.frames_dropped == 0, "frames passed over for the client's own cap are not drops"


async def test_a_capped_client_that_stops_reading_counts_the_frames_it_missed() -> None:
    _, broadcast = make_broadcast()
    sub, wire, _ = subscribe(broadcast, fps_cap=10.0)
    for seq in range(1, 11):
        broadcast.offer(sub, frame(seq), seq / CAMERA_FPS)
    assert sub.conn.frames_dropped == 0
    wire.paused = True  # frames 11..20 arrive while it is not reading
    for seq in range(11, 21):
        broadcast.offer(sub, frame(seq), seq / CAMERA_FPS)
    wire.paused = False
    broadcast.offer(sub, frame(21), 21 / CAMERA_FPS)
    conn = sub.conn
    assert conn.last_seq == 21
    # Sent 1, 4, 7, 10 at 10 fps; then its slots at frames 13, 16 and 19 went by unserved: three
    # drops (not the ten frames of the gap: at its cap it would have had three of them).
    assert conn.frames_dropped == 3, conn


async def test_a_new_cap_starts_its_own_grid_and_counts_no_drops_for_the_change() -> None:
    """Settings arriving mid-stream (uncapped, then capped and acking late) are not drops."""
    _, broadcast = make_broadcast()
    sub, _, _ = subscribe(broadcast, StreamKind.WEBSOCKET)
    broadcast.offer(sub, frame(1), 1 / CAMERA_FPS)
    sub.conn.fps_cap, sub.due = 5.0, 0.0  # as _apply_settings does on a new cap
    for seq in range(2, 8):
        broadcast.offer(sub, frame(seq), seq / CAMERA_FPS)
    assert sub.conn.last_seq == 2 and sub.conn.frames_dropped == 0


async def test_ack_mode_holds_frames_until_acknowledged() -> None:
    slot, broadcast = make_broadcast()
    sub, wire, _ = subscribe(broadcast, StreamKind.WEBSOCKET)
    sub.conn.ack_mode = True
    broadcast.on_frame(frame(1))
    slot._frame = frame(2)
    broadcast.on_frame(frame(2))
    assert len(wire.writes) == 1 and sub.held
    sub.held = False  # the client acknowledged frame 1
    slot._frame = frame(3)
    broadcast.kick(sub)
    assert len(wire.writes) == 2 and sub.conn.last_seq == 3, "after the ack: the newest frame, not frame 2"


async def test_frame_already_sent_is_not_sent_again() -> None:
    _, broadcast = make_broadcast()
    sub, wire, _ = subscribe(broadcast)
    broadcast.on_frame(frame(1))
    broadcast.kick(sub)
    broadcast.on_frame(frame(1))
    assert len(wire.writes) == 1


async def test_closing_connection_gets_nothing_and_a_failed_write_ends_it() -> None:
    _, broadcast = make_broadcast()
    sub, wire, _ = subscribe(broadcast)
    wire.closed = True
    broadcast.on_frame(frame(1))
    assert wire.writes == []
    wire.closed = False

    def broken(data: bytes) -> None:
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")

    wire.write = broken  # type: ignore[method-assign]
    broadcast.on_frame(frame(2))
    assert sub.ended.done() and sub.ended.result() == "gone"


async def test_stall_is_declared_only_without_progress() -> None:
    _, broadcast = make_broadcast(stall_timeout=1.0)
    reading, reading_wire, _ = subscribe(broadcast)
    silent, silent_wire, _ = subscribe(broadcast)
    for wire in (reading_wire, silent_wire):
        wire.paused, wire.paused_at, wire.paused_left, wire.left = True, time.monotonic(), 100_000, 100_000
    deadline = time.monotonic() + 3 * STALL_CHECK + 1.0
    while time.monotonic() < deadline and not silent.ended.done():
        reading_wire.left -= 1000  # this client reads, slowly
        await asyncio.sleep(0.2)  # the pace of its reading: a duration
    assert silent.ended.done() and silent.ended.result() == "stalled"
    assert not reading.ended.done(), "a client that keeps reading is not stalled, however slow"


# -- client messages, caps, pacer -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"type": "ack", "seq": 5}', None),
        ('{"type": "settings", "fps": 5, "ack": true}', None),
        ("not json", "message is not valid JSON"),
        ("[1, 2]", "message must be a JSON object"),
        ('{"type": "ack", "seq": "5"}', "ack.seq must be an integer"),
        ('{"type": "ack", "seq": true}', "ack.seq must be an integer"),
        ('{"type": "ping"}', "unknown message type 'ping'; expected 'settings' or 'ack'"),
        ("[" * 100_000, "message is not valid JSON"),
        ('{"type": "ack", "seq": ' + "9" * 5000 + "}", "message is not valid JSON"),
    ],
    ids=["ack", "settings", "not-json", "not-object", "seq-string", "seq-bool", "unknown", "deep", "too-many-digits"],
)
def test_parse_message(text: str, error: str | None) -> None:
    assert parse_message(text)[1] == error


@pytest.mark.parametrize(
    ("fps", "valid"),
    [
        (30, True),
        (0.01, True),
        (15.5, True),
        (0, False),
        (0.009, False),
        (31, False),
        (10**400, False),
        (-(10**400), False),
        (float("nan"), False),
        (float("inf"), False),
    ],
    ids=[
        "camera-rate",
        "floor",
        "fraction",
        "zero",
        "below-floor",
        "above-camera",
        "huge",
        "huge-negative",
        "nan",
        "inf",
    ],
)
def test_fps_cap_bounds(fps: float, valid: bool) -> None:
    assert (fps_cap_error(fps, CAMERA_FPS) is None) == valid


def test_pacer_keeps_a_grid_and_restarts_after_falling_behind() -> None:
    stop = threading.Event()
    pacer = _Pacer(100.0, stop)
    start = time.monotonic()
    for _ in range(20):
        assert pacer.wait()
    elapsed = time.monotonic() - start
    assert 0.18 <= elapsed < 1.0, f"20 frames at 100 fps took {elapsed:.3f} s"
    pacer.next -= 5.0  # a suspend: 500 frames behind the grid
    before = time.monotonic()
    assert all(pacer.wait() for _ in range(5))
    took = time.monotonic() - before
    # Not the 5 s of the suspend (a grid not restarted), not at once (a burst to catch up).
    assert 0.035 <= took < 1.0, f"5 frames after a suspend took {took:.3f} s: it must restart the grid, not burst"
    stop.set()
    assert not pacer.wait()
