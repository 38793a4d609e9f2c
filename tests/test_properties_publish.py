"""Property-based tests of what a publish target's server sends edge and of the bytes edge sends
it (hypothesis, in process): `edge.formats.rtmp` (AMF0, the chunk stream both ways),
`edge.formats.rtsp` (responses, interleaved frames) and `edge.formats.flv` (tags cut from the
muxer's writes).

The server is untrusted: random bytes and mutations of real server messages raise nothing but
`RtmpError` / `RtspError`, and what the readers keep is bounded. What edge sends is read back
the same however the bytes are cut: messages chunked at any chunk size come out of the reader
as they went in, and the same holds for FLV tags and RTSP responses split at any offsets.
"""

from __future__ import annotations

import math
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.formats import rtmp, rtsp
from edge.formats.flv import FlvSplitter, Tag

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# AMF0 values edge and servers exchange (no NaN: it does not compare equal to itself).
amf_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
amf_values = st.recursive(
    amf_scalars,
    lambda inner: st.one_of(
        st.dictionaries(st.text(min_size=1, max_size=12), inner, max_size=5),
        st.lists(inner, max_size=5),
    ),
    max_leaves=20,
)


def cuts(data: bytes, points: list[int]) -> list[bytes]:
    """``data`` cut at ``points`` (offsets taken modulo its length)."""
    offsets = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in zip(offsets, offsets[1:], strict=False)]


def server_chunks(messages: list[tuple[int, int, int, bytes]], size: int) -> bytes:
    """Messages as a server would send them: a Set Chunk Size first, then each message chunked."""
    out = rtmp.chunk(2, rtmp.SET_CHUNK_SIZE, 0, 0, struct.pack(">I", size), size=rtmp.DEFAULT_CHUNK_SIZE)
    for csid, type_id, timestamp, payload in messages:
        out += rtmp.chunk(csid, type_id, 1, timestamp, payload, size=size)
    return out


@SETTINGS
@given(values=st.lists(amf_values, max_size=6))
def test_amf0_round_trip(values: list[rtmp.AmfValue]) -> None:
    def normal(value: rtmp.AmfValue) -> rtmp.AmfValue:
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return value
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, dict):
            return {k: normal(v) for k, v in value.items()}
        return [normal(v) for v in value]

    assert rtmp.amf_decode(rtmp.amf_encode(*values)) == [normal(v) for v in values]


@SETTINGS
@given(data=st.binary(max_size=400))
def test_amf0_decoder_raises_only_rtmp_error(data: bytes) -> None:
    try:
        values = rtmp.amf_decode(data)
    except rtmp.RtmpError:
        return
    for value in values:
        assert not (isinstance(value, float) and not math.isfinite(value))


@SETTINGS
@given(
    messages=st.lists(
        st.tuples(
            st.integers(3, 63),
            st.sampled_from([rtmp.COMMAND_AMF0, rtmp.USER_CONTROL, rtmp.WINDOW_ACK_SIZE, rtmp.VIDEO]),
            st.one_of(st.integers(0, 0xFFFFFE), st.integers(0xFFFFFF, 0xFFFFFFFF)),
            st.binary(max_size=700),
        ),
        min_size=1,
        max_size=6,
    ),
    size=st.integers(1, 600),
    points=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_chunk_reader_returns_what_was_chunked_however_cut(
    messages: list[tuple[int, int, int, bytes]], size: int, points: list[int]
) -> None:
    reader = rtmp.ChunkReader()
    got: list[rtmp.Message] = []
    for piece in cuts(server_chunks(messages, size), points):
        got += reader.feed(piece)
    assert [(m.type_id, m.timestamp, m.payload) for m in got] == [(t, ts, p) for _, t, ts, p in messages]
    assert reader.chunk_size == size


@SETTINGS
@given(data=st.binary(max_size=2000), points=st.lists(st.integers(0, 3000), max_size=8))
def test_chunk_reader_on_random_bytes_raises_only_rtmp_error_and_stays_bounded(data: bytes, points: list[int]) -> None:
    reader = rtmp.ChunkReader()
    try:
        for piece in cuts(data, points):
            for message in reader.feed(piece):
                assert len(message.payload) <= rtmp.MAX_MESSAGE
    except rtmp.RtmpError:
        return
    assert len(reader._buffer) <= reader.chunk_size + 32


REAL_REPLY = server_chunks(
    [
        (2, rtmp.WINDOW_ACK_SIZE, 0, struct.pack(">I", 5_000_000)),
        (2, rtmp.SET_PEER_BANDWIDTH, 0, struct.pack(">IB", 5_000_000, 2)),
        (3, rtmp.COMMAND_AMF0, 0, rtmp.amf_encode("_result", 1.0, {"fmsVer": "FMS/3,0,1,123"}, {"code": "ok"})),
        (5, rtmp.COMMAND_AMF0, 0, rtmp.amf_encode("onStatus", 0.0, None, {"level": "status", "code": "x"})),
    ],
    4096,
)


@SETTINGS
@given(flips=st.lists(st.tuples(st.integers(0, len(REAL_REPLY) - 1), st.integers(1, 255)), min_size=1, max_size=6))
def test_chunk_reader_on_mutated_server_replies_raises_only_rtmp_error(flips: list[tuple[int, int]]) -> None:
    data = bytearray(REAL_REPLY)
    for at, mask in flips:
        data[at] ^= mask
    reader = rtmp.ChunkReader()
    try:
        for message in reader.feed(bytes(data)):
            if message.type_id == rtmp.COMMAND_AMF0:
                rtmp.command_parts(message.payload)
    except rtmp.RtmpError:
        pass


def flv_bytes(tags: list[tuple[int, int, bytes]]) -> bytes:
    out = b"FLV\x01\x01\x00\x00\x00\x09" + b"\x00\x00\x00\x00"
    for type_id, stamp, payload in tags:
        header = (
            bytes([type_id])
            + len(payload).to_bytes(3, "big")
            + (stamp & 0xFFFFFF).to_bytes(3, "big")
            + bytes([stamp >> 24])
            + b"\x00\x00\x00"
        )
        out += header + payload + struct.pack(">I", 11 + len(payload))
    return out


@SETTINGS
@given(
    tags=st.lists(
        st.tuples(st.sampled_from([8, 9, 18]), st.integers(0, 0xFFFFFFFF), st.binary(max_size=300)), max_size=8
    ),
    points=st.lists(st.integers(0, 5000), max_size=10),
)
def test_flv_tags_come_out_whole_however_the_writes_fall(tags: list[tuple[int, int, bytes]], points: list[int]) -> None:
    splitter = FlvSplitter()
    got: list[Tag] = []
    for piece in cuts(flv_bytes(tags), points):
        got += splitter.feed(piece)
    assert [(t.type_id, t.timestamp, t.payload) for t in got] == tags


def rtsp_reply(cseq: int, body: bytes = b"", extra: str = "") -> bytes:
    head = f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n{extra}"
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


@SETTINGS
@given(
    bodies=st.lists(st.binary(max_size=200), min_size=1, max_size=5),
    frames=st.lists(st.binary(max_size=100), max_size=4),
    points=st.lists(st.integers(0, 3000), max_size=10),
)
def test_rtsp_responses_come_out_whole_between_interleaved_frames(
    bodies: list[bytes], frames: list[bytes], points: list[int]
) -> None:
    data = b""
    for i, body in enumerate(bodies):
        data += rtsp_reply(i + 1, body, 'Session: 1234;timeout=60\r\nWWW-Authenticate: Digest realm="r", nonce="n"\r\n')
        if i < len(frames):
            data += rtsp.interleaved(1, frames[i])
    reader = rtsp.ResponseReader()
    got: list[rtsp.Response] = []
    for piece in cuts(data, points):
        got += reader.feed(piece)
    assert [(r.status, r.header("cseq"), r.body) for r in got] == [(200, str(i + 1), b) for i, b in enumerate(bodies)]
    assert all(r.auth == ('Digest realm="r", nonce="n"',) for r in got)


@SETTINGS
@given(data=st.binary(max_size=3000), points=st.lists(st.integers(0, 4000), max_size=8))
def test_rtsp_reader_on_random_bytes_raises_only_rtsp_error_and_stays_bounded(data: bytes, points: list[int]) -> None:
    reader = rtsp.ResponseReader()
    try:
        for piece in cuts(data, points):
            reader.feed(piece)
    except rtsp.RtspError:
        return
    assert len(reader._buffer) <= rtsp.MAX_HEAD + rtsp.MAX_BODY + 8
