"""Property-based tests of edge's JPEG parsers of untrusted bytes, in process (hypothesis):
`edge.formats.jpeg.check_frame`, which every passed-through camera frame goes through, and
`edge.formats.jpeg_stream.JpegStreamSplitter`, which cuts a `pipe:` source's byte stream.

Random bytes and mutations of real frames (cv2-encoded, some without Huffman tables like a UVC
camera's) must never raise anything but `InvalidFrame`; whatever `check_frame` accepts is a whole
JPEG that a second check leaves alone; mutations that keep the header (the scan data changed,
zero padding after the end) are accepted and decode to the right size, and frames cut short or
with another glued into their scan are refused. The splitter must return the same frames however
the stream is chunked, never raise, and hold at most `max_frame` bytes plus one read.

`check_frame` walks headers without decoding (edge/formats/jpeg.py), so it cannot promise that a
frame whose tables were mutated decodes: header mutations are only held to "InvalidFrame or a
whole JPEG".
"""

from __future__ import annotations

import cv2
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.formats.jpeg import EOI, REASONS, SOI, InvalidFrame, check_frame
from edge.formats.jpeg_stream import JpegStreamSplitter
from tests.support.jpeg import segments, strip_dht

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _encode(width: int, height: int, quality: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (5, 5), 0)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


ENCODED = [_encode(64, 48, 80, 1), _encode(32, 32, 50, 2), _encode(40, 24, 95, 3)]
REAL = [*ENCODED, strip_dht(ENCODED[0])]  # the last one as a UVC camera sends it: no Huffman tables
SIZES = {frame: (w, h) for frame, (w, h) in zip(REAL, [(64, 48), (32, 32), (40, 24), (64, 48)], strict=True)}


def scan_start(frame: bytes) -> int:
    """Where the entropy-coded data begins (found by the tests' own segment walk)."""
    return segments(frame)[-1][2]


def checked(data: bytes) -> bytes | None:
    """`check_frame`'s answer: the frame to publish, or None for `InvalidFrame` (anything else
    it raises fails the test)."""
    try:
        return check_frame(data)
    except InvalidFrame as exc:
        assert exc.reason in REASONS, exc.reason
        return None


def assert_whole_jpeg(out: bytes) -> None:
    assert out.startswith(SOI) and out.endswith(EOI), f"accepted {out[:4].hex()}...{out[-4:].hex()}"
    assert check_frame(out) == out, "a second check changes what the first accepted"


def assert_decodes(out: bytes, size: tuple[int, int]) -> None:
    img = cv2.imdecode(np.frombuffer(out, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "an accepted frame does not decode"
    assert (img.shape[1], img.shape[0]) == size


def test_real_frames_are_accepted_and_decode() -> None:
    for frame in REAL:
        out = check_frame(frame, expect=SIZES[frame])
        assert_whole_jpeg(out)
        assert_decodes(out, SIZES[frame])
    assert check_frame(ENCODED[0]) is ENCODED[0], "a frame fine as it is is published as it is"


@SETTINGS
@given(st.binary(max_size=2048))
def test_random_bytes_raise_only_invalid_frame(data: bytes) -> None:
    out = checked(data)
    if out is not None:
        assert_whole_jpeg(out)


@SETTINGS
@given(st.binary(max_size=600).map(lambda tail: b"\xff\xd8\xff" + tail))
def test_random_bytes_after_a_start_of_image_raise_only_invalid_frame(data: bytes) -> None:
    out = checked(data)
    if out is not None:
        assert_whole_jpeg(out)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real frame with bytes replaced, inserted or deleted anywhere (header included)."""
    frame = bytearray(draw(st.sampled_from(REAL)))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(frame) - 1))
        op = draw(st.sampled_from(["set", "insert", "delete"]))
        if op == "set":
            frame[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            frame[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        else:
            del frame[pos : pos + draw(st.integers(1, 4))]
    return bytes(frame)


@SETTINGS
@given(mutated())
def test_mutated_frames_raise_only_invalid_frame_or_give_a_whole_jpeg(data: bytes) -> None:
    out = checked(data)
    if out is not None:
        assert_whole_jpeg(out)


@st.composite
def scan_mutated(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(original, copy) with bytes of its scan data changed, never into or next to an FF (which
    would make or break a marker): the header is intact, so the frame stays a frame."""
    original = draw(st.sampled_from(REAL))
    frame = bytearray(original)
    start = scan_start(original)
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(start + 1, len(frame) - 3))
        if 0xFF in (frame[pos - 1], frame[pos], frame[pos + 1]):
            continue
        frame[pos] = draw(st.integers(0, 0xFE))
    return original, bytes(frame)


@SETTINGS
@given(scan_mutated(), st.integers(0, 64))
def test_frames_with_scan_data_changed_or_zero_padding_are_accepted_and_decode(
    frames: tuple[bytes, bytes], padding: int
) -> None:
    original, frame = frames
    out = checked(frame + b"\x00" * padding)
    assert out is not None, "a frame with an intact header was refused"
    assert_whole_jpeg(out)
    assert_decodes(out, SIZES[original])


@SETTINGS
@given(st.sampled_from(REAL), st.data())
def test_frames_cut_short_are_refused(frame: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(frame) - 1))
    assert checked(frame[:cut]) is None, f"a frame cut at {cut} of {len(frame)} was accepted"


@SETTINGS
@given(st.sampled_from(REAL), st.sampled_from(REAL), st.data())
def test_a_frame_cut_in_its_scan_with_another_glued_on_is_refused(
    first: bytes, second: bytes, data: st.DataObject
) -> None:
    cut = data.draw(st.integers(scan_start(first), len(first) - 1))
    assert checked(first[:cut] + second) is None, "two frames glued together were accepted"


# -- JpegStreamSplitter ------------------------------------------------------------------------


def stream_pieces() -> st.SearchStrategy[bytes]:
    """What a pipe may carry: whole frames, frames cut anywhere, garbage, lone marker bytes."""
    cut = st.sampled_from(REAL).flatmap(lambda f: st.integers(0, len(f)).map(lambda k: f[:k]))
    tail = st.sampled_from(REAL).flatmap(lambda f: st.integers(0, len(f)).map(lambda k: f[k:]))
    markers = st.sampled_from([b"\xff", b"\xff\xd8", b"\xff\xd9", b"\x00", b"\xff\xff"])
    return st.one_of(st.sampled_from(REAL), cut, tail, st.binary(max_size=64), markers)


def split(splitter: JpegStreamSplitter, data: bytes, cuts: list[int]) -> list[bytes]:
    """Feed `data` cut at `cuts`; every frame returned, checking memory after each read."""
    frames: list[bytes] = []
    last = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        piece = data[last:cut]
        last = cut
        frames += splitter.feed(piece)
        assert splitter.buffered <= splitter.max_frame + len(piece), (splitter.buffered, len(piece))
    return frames


@SETTINGS
@given(
    st.lists(stream_pieces(), max_size=10).map(b"".join),
    st.lists(st.integers(0, 8000), max_size=24),
    st.sampled_from([None, 64, 1000]),
)
def test_stream_splitter_frames_do_not_depend_on_the_chunking(
    data: bytes, cuts: list[int], max_frame: int | None
) -> None:
    """Also with a small `max_frame`: a frame discarded in one chunking is discarded in all."""

    def splitter() -> JpegStreamSplitter:
        return JpegStreamSplitter() if max_frame is None else JpegStreamSplitter(max_frame=max_frame)

    whole = split(splitter(), data, [])
    assert split(splitter(), data, [c for c in cuts if c < len(data)]) == whole
    if len(data) <= 2000:
        assert split(splitter(), data, list(range(len(data)))) == whole  # one byte at a time
    for frame in whole:
        assert frame.startswith(SOI) and frame.endswith(EOI)
        assert max_frame is None or len(frame) <= max_frame


@SETTINGS
@given(st.lists(st.sampled_from(REAL), min_size=1, max_size=6), st.lists(st.binary(max_size=32), max_size=6))
def test_stream_splitter_finds_every_frame_between_garbage(frames: list[bytes], junk: list[bytes]) -> None:
    """Garbage between frames that holds no FF D8 is skipped; every frame comes out whole."""
    junk = [j.replace(b"\xff", b"") for j in junk] + [b""] * len(frames)
    data = b"".join(j + f for j, f in zip(junk, frames, strict=False))
    assert split(JpegStreamSplitter(), data, list(range(0, len(data), 7))) == frames
