"""Checks of the load client's stream reading (run: ``.venv/bin/pytest benchmarks``).

A benchmark whose client miscounts frames reports wrong fps. The parsing itself is the test
suite's (tests/support/multipart.py, checked in tests/test_mjpeg_parser.py); here the load
client's `StreamReceiver` is fed whole synthetic responses cut at awkward places, through a
reused buffer as the event loop hands them over, and must record every frame, count (and survive)
a broken part, record the response head's problems, and fail a client that gets no stream.
"""

from __future__ import annotations

import math
import random

import pytest
from loadgen.clients import FrameStats, StreamReceiver
from loadgen.proto import parse_head

TOKEN = b"frame-7f3a"
JPEG = b"\xff\xd8" + bytes(range(256)) * 40 + b"\xff\xd9"
HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=" + TOKEN + b"\r\n"
    b"Cache-Control: no-store, no-cache, must-revalidate, max-age=0\r\nPragma: no-cache\r\n"
    b"X-Accel-Buffering: no\r\n"
)


def part(ts: float, jpeg: bytes = JPEG, length: int | None = None) -> bytes:
    """One frame exactly as §4 of docs/interface.md lays it out, boundary after the JPEG."""
    n = len(jpeg) if length is None else length
    head = f"Content-Type: image/jpeg\r\nContent-Length: {n}\r\nX-Timestamp: {ts:.6f}\r\n\r\n"
    return head.encode() + jpeg + b"\r\n--" + TOKEN + b"\r\n"


def body(frames: list[bytes]) -> bytes:
    """The multipart body: opening boundary, then the parts."""
    return b"--" + TOKEN + b"\r\n" + b"".join(frames)


def chunked(data: bytes, rng: random.Random) -> bytes:
    """Chunked transfer coding with random chunk sizes (1 byte to 40 KB) and a size extension."""
    out, pos = bytearray(), 0
    while pos < len(data):
        size = min(len(data) - pos, rng.choice([1, 2, 7, 100, 4096, 40000]))
        out += f"{size:x};ext=1\r\n".encode() + data[pos : pos + size] + b"\r\n"
        pos += size
    return bytes(out + b"0\r\n\r\n")


def response(frames: list[bytes], use_chunked: bool, rng: random.Random) -> bytes:
    if use_chunked:
        return HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body(frames), rng)
    return HEAD + b"\r\n" + body(frames)


def feed_split(receiver: StreamReceiver, data: bytes, rng: random.Random) -> None:
    """Feed through a reused buffer in random read sizes, as a socket would deliver it."""
    buf = bytearray(65536)
    pos = 0
    while pos < len(data) and not receiver.done:
        n = min(len(data) - pos, rng.choice([1, 3, 17, 512, 8192, 65536]))
        buf[:n] = data[pos : pos + n]
        receiver.feed(buf, 0, n, float(pos))
        buf[:n] = b"\x00" * n  # a parser that kept a reference would now see garbage
        pos += n


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("use_chunked", [False, True])
def test_every_frame_recorded_at_any_split(seed: int, use_chunked: bool) -> None:
    rng = random.Random(seed)
    stamps = [1000.0 + i / 30 for i in range(12)]
    stats = FrameStats("fast")
    receiver = StreamReceiver(stats)
    feed_split(receiver, response([part(ts) for ts in stamps], use_chunked, rng), rng)
    assert stats.errors == {} and stats.failure is None and stats.status == 200
    assert stats.frames == len(stamps) and stats.bad_jpeg == 0 and stats.repeats == 0
    assert [round(stats.arrivals[i] - stats.lags[i], 6) for i in range(len(stamps))] == [round(ts, 6) for ts in stamps]
    assert stats.info["chunked"] is use_chunked and "head_problems" not in stats.info
    assert receiver.done is use_chunked, "a chunked body ends with its last chunk"


def test_bad_jpeg_counted_and_wrong_length_resynced() -> None:
    stats = FrameStats("fast")
    frames = [part(1.0), part(2.0, jpeg=b"\x00\x00" + JPEG[2:]), part(3.0, length=len(JPEG) - 5), part(4.0)]
    feed_split(StreamReceiver(stats), response(frames, False, random.Random(1)), random.Random(1))
    assert stats.frames == 3 and stats.bad_jpeg == 1
    assert list(stats.arrivals)[0] - list(stats.lags)[0] == 1.0
    assert [reason.split(" (")[0] for reason in stats.errors] == [
        f"Content-Length {len(JPEG) - 5} not followed by the boundary"
    ]


def test_head_problems_are_recorded_and_a_refusal_fails_the_client() -> None:
    stats = FrameStats("fast")
    receiver = StreamReceiver(stats)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=" + TOKEN + b"\r\n\r\n"
    feed_split(receiver, head + body([part(1.0)]), random.Random(2))
    assert stats.frames == 1 and len(stats.info["head_problems"]) == 3
    refused = FrameStats("fast")
    receiver = StreamReceiver(refused)
    feed_split(receiver, b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\r\n{}", random.Random(3))
    assert refused.failure == "HTTP 503" and refused.status == 503 and receiver.done
    assert not math.isnan(refused.ended_at)


def test_response_head() -> None:
    head = parse_head(HEAD.rstrip(b"\r\n") + b"\r\nTransfer-Encoding: chunked")
    assert (head.status, head.boundary, head.chunked) == (200, TOKEN, True)
    assert head.head_problems() == []
