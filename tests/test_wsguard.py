"""The WebSocket frame guard in process (edge/server/wsguard.py): it reads only frame headers, from
bytes split anywhere, and stops at the first frame over the flood limit or the message size.

The guard sees untrusted bytes before anything else does, so besides the examples hypothesis
feeds it arbitrary frame streams cut at arbitrary points, and arbitrary garbage: the count
must not depend on where the reads split the stream, and nothing may raise.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.server.wsguard import FLOOD_LIMIT, MAX_MESSAGE, MIN_FRAGMENT_COST, FrameGuard
from tests.support.attacks import masked_frame
from tests.support.websocket import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def guard(clock: Clock | None = None) -> FrameGuard:
    return FrameGuard(clock=clock or Clock())


def feed_in_pieces(g: FrameGuard, data: bytes, cuts: list[int]) -> int:
    """Feed `data` split at `cuts`; the number of bytes the guard let through in all."""
    passed = 0
    last = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        piece = data[last:cut]
        last = cut
        n = g.feed(piece)
        passed += n
        if n < len(piece):
            break
    return passed


def test_frames_under_the_limit_all_pass() -> None:
    g = guard()
    data = masked_frame(OP_TEXT, b'{"type": "ack", "seq": 1}') * FLOOD_LIMIT
    assert g.feed(data) == len(data)
    assert g.violation is None and g.frames == FLOOD_LIMIT


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_PING, OP_PONG, OP_BINARY])
def test_the_frame_over_the_limit_and_everything_after_it_are_held_back(opcode: int) -> None:
    g = guard()
    one = masked_frame(opcode, b"xy")
    data = one * (FLOOD_LIMIT + 5)
    assert g.feed(data) == len(one) * FLOOD_LIMIT
    assert g.violation == (1008, f"more than {FLOOD_LIMIT} frames per second")
    assert g.feed(one) == 0  # for good


def test_empty_fragments_count_as_frames() -> None:
    g = guard()
    data = masked_frame(OP_TEXT, fin=False) + masked_frame(OP_CONT, fin=False) * 200
    assert g.feed(data) < len(data)
    assert g.violation is not None and g.violation[0] == 1008


def test_the_window_is_one_second() -> None:
    clock = Clock()
    g = guard(clock)
    one = masked_frame(OP_PING)
    for _ in range(5):  # 100 a second, for five seconds
        assert g.feed(one * FLOOD_LIMIT) == len(one) * FLOOD_LIMIT
        clock.now += 1.0
    assert g.violation is None


def test_refunds_credit_frames_back() -> None:
    g = guard()
    ack = masked_frame(OP_TEXT, b'{"type": "ack", "seq": 7}')
    for _ in range(FLOOD_LIMIT * 3):
        assert g.feed(ack) == len(ack)
        g.refund()
    assert g.violation is None


def test_a_message_over_64_kib_in_fragments_is_refused_1009() -> None:
    g = guard()
    kib = b"x" * 1024
    data = masked_frame(OP_TEXT, kib, fin=False) + masked_frame(OP_CONT, kib, fin=False) * 64
    assert g.feed(data) == len(data) - len(masked_frame(OP_CONT, kib, fin=False))
    assert g.violation == (1009, f"message larger than {MAX_MESSAGE} bytes")


def test_an_unfragmented_message_of_exactly_64_kib_passes() -> None:
    g = guard()
    data = masked_frame(OP_BINARY, b"x" * MAX_MESSAGE)
    assert g.feed(data) == len(data) and g.violation is None


def test_a_frame_that_announces_more_than_64_kib_is_stopped_at_its_header() -> None:
    g = guard()
    header = bytes([0x81, 0x80 | 127]) + (1 << 40).to_bytes(8, "big") + b"mask"
    assert g.feed(header) == 0
    assert g.violation is not None and g.violation[0] == 1009


def test_empty_fragments_cost_at_least_their_minimum() -> None:
    """A message of empty fragments ends (1009) after MAX_MESSAGE / MIN_FRAGMENT_COST of them."""
    clock = Clock()
    g = guard(clock)
    fragments = MAX_MESSAGE // MIN_FRAGMENT_COST
    g.feed(masked_frame(OP_TEXT, fin=False))
    for i in range(fragments + 1):
        if i % 50 == 0:
            clock.now += 1.0  # under the flood limit
        if g.feed(masked_frame(OP_CONT, fin=False)) == 0:
            break
    assert g.violation is not None and g.violation[0] == 1009
    assert i == fragments - 1


def test_a_close_frame_is_noticed() -> None:
    g = guard()
    g.feed(masked_frame(OP_TEXT, b"{}") + masked_frame(OP_CLOSE, b"\x03\xe8"))
    assert g.close_seen


frame_strategy = st.builds(
    masked_frame,
    st.sampled_from([OP_TEXT, OP_BINARY, OP_PING, OP_PONG]),
    st.binary(max_size=300),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(frame_strategy, max_size=40), st.lists(st.integers(min_value=0, max_value=20_000), max_size=30))
def test_the_count_does_not_depend_on_where_reads_split_the_stream(frames: list[bytes], cuts: list[int]) -> None:
    data = b"".join(frames)
    whole, pieces = guard(), guard()
    assert whole.feed(data) == len(data)
    assert feed_in_pieces(pieces, data, [c for c in cuts if c <= len(data)]) == len(data)
    assert whole.frames == pieces.frames == len(frames)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=FLOOD_LIMIT + 1, max_value=300), st.lists(st.integers(0, 5000), max_size=20))
def test_a_flood_is_stopped_at_its_101st_frame_however_it_is_split(count: int, cuts: list[int]) -> None:
    """Only the start of the 101st frame's header can have gone through, when a read ended
    inside it (the parser then waits for the rest, which never comes)."""
    one = masked_frame(OP_PING, b"abc")
    data = one * count
    g = guard()
    passed = feed_in_pieces(g, data, [c for c in cuts if c <= len(data)])
    assert len(one) * FLOOD_LIMIT <= passed < len(one) * FLOOD_LIMIT + 6  # a masked header is 6 bytes here
    assert g.violation is not None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=4096), st.lists(st.integers(0, 4096), max_size=10))
def test_garbage_never_raises(data: bytes, cuts: list[int]) -> None:
    g = guard()
    passed = feed_in_pieces(g, data, [c for c in cuts if c <= len(data)])
    assert 0 <= passed <= len(data)
