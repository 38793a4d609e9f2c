"""Checks of the load client's stream parsers (run: ``.venv/bin/pytest benchmarks``).

A benchmark whose parser miscounts frames reports wrong fps, so the parsers are fed a
synthetic stream cut at every kind of awkward place: inside chunk-size lines, inside part
headers, between a JPEG and its boundary.
"""

from __future__ import annotations

import random

import pytest
from loadgen.proto import ChunkedDecoder, MultipartParser, parse_head

TOKEN = b"frame-7f3a"
JPEG = b"\xff\xd8" + bytes(range(256)) * 40 + b"\xff\xd9"


def part(ts: float, jpeg: bytes = JPEG, length: int | None = None) -> bytes:
    """One frame exactly as contract §4 lays it out, boundary after the JPEG."""
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


class Recorder:
    """Collects parser callbacks."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, float, bool]] = []
        self.errors: list[str] = []

    def frame(self, now: float, ts: float, ok: bool, wait: float) -> None:
        self.frames.append((now, ts, ok))

    def error(self, reason: str) -> None:
        self.errors.append(reason)


def feed_split(sink: ChunkedDecoder | MultipartParser, data: bytes, rng: random.Random) -> None:
    """Feed through a reused buffer in random read sizes, as a socket would deliver it."""
    buf = bytearray(65536)
    pos = 0
    while pos < len(data):
        n = min(len(data) - pos, rng.choice([1, 3, 17, 512, 8192, 65536]))
        buf[:n] = data[pos : pos + n]
        sink.feed(buf, 0, n, float(pos))
        buf[:n] = b"\x00" * n  # a parser that kept a reference would now see garbage
        pos += n


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("use_chunked", [False, True])
def test_every_frame_found_at_any_split(seed: int, use_chunked: bool) -> None:
    rng = random.Random(seed)
    stamps = [1000.0 + i / 30 for i in range(12)]
    data = body([part(ts) for ts in stamps])
    rec = Recorder()
    parser = MultipartParser(TOKEN, rec.frame, rec.error)
    sink = ChunkedDecoder(parser, rec.error) if use_chunked else parser
    feed_split(sink, chunked(data, rng) if use_chunked else data, rng)
    assert rec.errors == []
    assert [round(ts, 6) for _, ts, _ in rec.frames] == [round(ts, 6) for ts in stamps]
    assert all(ok for _, _, ok in rec.frames)


def test_bad_jpeg_counted_and_wrong_length_resynced() -> None:
    rec = Recorder()
    parser = MultipartParser(TOKEN, rec.frame, rec.error)
    frames = [part(1.0), part(2.0, jpeg=b"\x00\x00" + JPEG[2:]), part(3.0, length=len(JPEG) - 5), part(4.0)]
    feed_split(parser, body(frames), random.Random(1))
    assert [ts for _, ts, _ in rec.frames] == [1.0, 2.0, 4.0]
    assert [ok for _, _, ok in rec.frames] == [True, False, True]
    assert rec.errors == ["no boundary right after Content-Length bytes"]


def test_response_head() -> None:
    head = parse_head(
        b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary="
        + TOKEN
        + b"\r\nTransfer-Encoding: chunked\r\nCache-Control: no-store, no-cache, must-revalidate, max-age=0"
        + b"\r\nPragma: no-cache\r\nX-Accel-Buffering: no"
    )
    assert (head.status, head.boundary, head.chunked) == (200, TOKEN, True)
    assert head.contract_problems() == []
