"""The tests' own MJPEG parser (tests/support/multipart.py, response.py), in process: the soak, the
load benchmark and `MjpegStream` count and check frames with it, so a parser that miscounts would
make them report wrong rates or miss corrupt frames.

Synthetic streams exactly as §4 of docs/interface.md lays them out are fed through a reused buffer
that is overwritten after every read (a parser that kept a reference would see garbage), cut at
every kind of awkward place (hypothesis: inside chunk-size lines, part headers, the JPEG, the
delimiter); the parts must not depend on the cuts. Framing errors stop the parser, or with
``resync`` cost one frame; wrong part headers and JPEG markers are reported per part.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.multipart import MultipartParser, Part
from tests.support.response import MjpegBody, MjpegResponse

TOKEN = b"frame-7f3a"
JPEG = b"\xff\xd8" + bytes(range(256)) * 8 + b"\xff\xd9"
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def part(ts: float, jpeg: bytes = JPEG, length: int | None = None, head: bytes | None = None) -> bytes:
    """One part as §4 lays it out: headers, the JPEG, then the delimiter."""
    n = len(jpeg) if length is None else length
    if head is None:
        head = b"Content-Type: image/jpeg\r\nContent-Length: %d\r\nX-Timestamp: %.6f" % (n, ts)
    return head + b"\r\n\r\n" + jpeg + b"\r\n--" + TOKEN + b"\r\n"


def body(parts: list[bytes]) -> bytes:
    return b"--" + TOKEN + b"\r\n" + b"".join(parts)


def chunked(data: bytes, sizes: list[int]) -> bytes:
    """Chunked transfer coding, chunk sizes drawn from `sizes` in turn (with a size extension)."""
    out, pos, i = bytearray(), 0, 0
    while pos < len(data):
        size = min(len(data) - pos, sizes[i % len(sizes)])
        i += 1
        out += b"%x;ext=1\r\n" % size + data[pos : pos + size] + b"\r\n"
        pos += size
    return bytes(out + b"0\r\n\r\n")


class Recorder:
    """A PartSink that keeps everything; ``capture`` asks for the JPEG bytes."""

    def __init__(self, capture: bool = False) -> None:
        self.capture = capture
        self.parts: list[Part] = []
        self.errors: list[str] = []

    def want_jpeg(self) -> bool:
        return self.capture

    def on_part(self, p: Part) -> None:
        self.parts.append(p)

    def on_error(self, reason: str) -> None:
        self.errors.append(reason)


def feed(target: MjpegBody | MultipartParser | MjpegResponse, data: bytes, cuts: list[int]) -> None:
    """Feed through one reused buffer, cut at `cuts`, overwriting the buffer after each read."""
    buf = bytearray(len(data) + 1)
    last = 0
    for cut in [*sorted(set(c for c in cuts if 0 < c < len(data))), len(data)]:
        n = cut - last
        buf[:n] = data[last:cut]
        target.feed(buf, 0, n, float(cut))
        buf[:n] = b"\x00" * n  # a parser that kept a reference would now see garbage
        last = cut


STAMPS = [1000.0 + i / 30 for i in range(6)]
cuts = st.lists(st.integers(0, 20_000), max_size=30)
chunk_sizes = st.lists(st.sampled_from([1, 7, 100, 4096, 40000]), min_size=1, max_size=5)


@SETTINGS
@given(cuts, st.booleans(), chunk_sizes, st.booleans())
def test_every_part_found_whatever_the_cuts(
    cut_at: list[int], use_chunked: bool, sizes: list[int], capture: bool
) -> None:
    data = body([part(ts) for ts in STAMPS])
    rec = Recorder(capture)
    feed(MjpegBody(TOKEN, use_chunked, rec), chunked(data, sizes) if use_chunked else data, cut_at)
    assert rec.errors == []
    assert [round(p.timestamp, 6) for p in rec.parts] == [round(ts, 6) for ts in STAMPS]
    assert all(p.problem is None and p.jpeg_ok and p.length == len(JPEG) and not p.last for p in rec.parts)
    assert all(p.jpeg_end <= p.at for p in rec.parts)
    assert [p.jpeg for p in rec.parts] == [JPEG if capture else None] * len(STAMPS)
    assert all(p.head.startswith(b"Content-Type: image/jpeg\r\nContent-Length: ") for p in rec.parts)


def test_one_byte_at_a_time_and_mid_jpeg() -> None:
    data = body([part(1.0), part(2.0)])
    rec = Recorder()
    parser = MultipartParser(TOKEN, rec)
    inside = []
    for i in range(len(data)):
        parser.feed(data, i, i + 1, 0.0)
        inside.append(parser.mid_jpeg)
    assert [p.timestamp for p in rec.parts] == [1.0, 2.0] and parser.frames == 2
    assert sum(inside) == 2 * (len(JPEG) - 1), "mid_jpeg: after a JPEG's first byte, before its last"


def test_wrong_headers_and_markers_are_problems_of_the_part_not_of_the_stream() -> None:
    rec = Recorder()
    parts = [
        part(1.0, jpeg=b"\x00\x00" + JPEG[2:]),
        part(2.0, head=b"Content-Type: image/png\r\nContent-Length: %d\r\nX-Timestamp: 2" % len(JPEG)),
        part(3.0, head=b"Content-Type: image/jpeg\r\nContent-Length: %d" % len(JPEG)),
        part(4.0, head=b"Content-Type: image/jpeg\r\nContent-Length: %d\r\nX-Timestamp: soon" % len(JPEG)),
        part(5.0),
    ]
    feed(MultipartParser(TOKEN, rec), body(parts), [])
    problems = [p.problem or "" for p in rec.parts]
    assert "JPEG does not start FF D8" in problems[0]
    assert "image/png" in problems[1]
    assert problems[2] == "part without X-Timestamp" and math.isnan(rec.parts[2].timestamp)
    assert "X-Timestamp is not a number" in problems[3]
    assert problems[4] == "" and rec.errors == []


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"--other\r\n" + part(1.0), "body does not start with the boundary line"),
        (body([part(1.0, length=len(JPEG) - 5)]), "not followed by the boundary"),
        (body([part(1.0, head=b"Content-Type: image/jpeg\r\nX-Timestamp: 1.0")]), "without Content-Length"),
        (body([part(1.0, head=b"Content-Length: -3")]), "Content-Length that is not a number"),
        (b"--" + TOKEN + b"\r\n" + b"X" * 2000, "part headers longer than 1024 bytes"),
    ],
    ids=["opening", "length-too-short", "no-length", "bad-length", "endless-head"],
)
def test_framing_errors_stop_the_parser(data: bytes, error: str) -> None:
    rec = Recorder()
    parser = MultipartParser(TOKEN, rec)
    feed(parser, data + part(9.0), [])
    assert len(rec.errors) == 1 and error in rec.errors[0], rec.errors
    assert parser.failed is not None and rec.parts == [], "nothing after a framing error is trusted"


def test_with_resync_a_broken_part_costs_one_frame() -> None:
    rec = Recorder()
    frames = [part(1.0), part(2.0, jpeg=b"\x00\x00" + JPEG[2:]), part(3.0, length=len(JPEG) - 5), part(4.0)]
    feed(MultipartParser(TOKEN, rec, resync=True), body(frames), [3, 5000, 10400, 10403])
    assert [p.timestamp for p in rec.parts] == [1.0, 2.0, 4.0]
    assert [p.jpeg_ok for p in rec.parts] == [True, False, True]
    assert len(rec.errors) == 1 and "not followed by the boundary" in rec.errors[0]


def test_final_delimiter_ends_the_stream() -> None:
    rec = Recorder()
    parser = MultipartParser(TOKEN, rec)
    feed(parser, body([part(1.0)])[: -len(b"\r\n--" + TOKEN + b"\r\n")] + b"\r\n--" + TOKEN + b"--", [])
    assert parser.ended and [p.last for p in rec.parts] == [True]


@pytest.mark.parametrize(
    ("coding", "error"),
    [
        (b"zz\r\n", "bad chunk size line"),
        (b"5\n", "bad chunk size line"),  # a bare LF is not HTTP/1.1
        (b"5\r\n--fra\r\n", None),  # fine so far
        (b"5\r\n--fraXX", "chunk data not followed by CRLF"),
        (b"1" * 2000, "chunk size line too long"),
    ],
)
def test_chunk_coding_is_checked(coding: bytes, error: str | None) -> None:
    rec = Recorder()
    decoded = MjpegBody(TOKEN, True, rec)
    feed(decoded, coding, [])
    if error is None:
        assert rec.errors == [] and decoded.parts.failed is None
    else:
        assert len(rec.errors) == 1 and error in rec.errors[0]
        assert decoded.parts.failed is not None


def test_last_chunk_ends_the_body() -> None:
    rec = Recorder()
    decoded = MjpegBody(TOKEN, True, rec)
    feed(decoded, chunked(body([part(1.0)]), [100]), [])
    assert decoded.ended and len(rec.parts) == 1


HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=" + TOKEN + b"\r\n"
    b"Transfer-Encoding: chunked\r\nCache-Control: no-store\r\n\r\n"
)


@SETTINGS
@given(cuts)
def test_response_head_then_chunked_body(cut_at: list[int]) -> None:
    rec = Recorder()
    response = MjpegResponse(rec)
    feed(response, HEAD + chunked(body([part(ts) for ts in STAMPS]), [4096]), cut_at)
    assert (response.status, response.chunked, response.failed) == (200, True, None)
    assert response.headers["cache-control"] == "no-store"
    assert response.frames == len(STAMPS) and response.ended and response.done


@pytest.mark.parametrize(
    ("head", "failed"),
    [
        (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\r\n{}", "HTTP 503"),
        (b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8", "not a multipart stream"),
        (b"HTTP/1.1 200 OK\r\n" + b"X-Long: " + b"a" * 20000, "response head too long"),
    ],
)
def test_an_answer_that_is_not_a_stream_fails_the_response(head: bytes, failed: str) -> None:
    response = MjpegResponse(Recorder())
    feed(response, head, [])
    assert response.failed is not None and response.failed.startswith(failed)
    assert response.done and response.frames == 0
