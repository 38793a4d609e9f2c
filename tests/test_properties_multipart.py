"""Property-based tests of `edge.formats.multipart.MultipartSplitter`, the parser of what an
``http://`` camera sends (another edge, mjpg-streamer, an IP camera), in process (hypothesis).

Streams are built from the dialects the splitter is meant to read (parts with and without
``Content-Length``, CRLF or LF, the boundary before or after each frame, frames cut anywhere)
mixed with garbage. Whatever the bytes: nothing raises, every payload is returned as the stream
delimits it the same way however the stream is chunked (boundary given or learned, default or
small part limit), and the splitter holds at most ``max(max_part, max_header)`` bytes plus one read. Well-formed
streams give back exactly their frames.

Three cases where the payloads did depend on the chunking (found by these properties, fixed in
`edge.formats.multipart`) are pinned below as plain examples.
"""

from __future__ import annotations

import cv2
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.formats.multipart import MultipartSplitter

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOKEN = b"tok-42"


def _encode(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    ok, buf = cv2.imencode(".jpg", rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    assert ok
    return buf.tobytes()


FRAMES = [_encode(16, 16, 1), _encode(24, 8, 2), _encode(8, 8, 3)]


def part(jpeg: bytes, *, length: bool = True, newline: bytes = b"\r\n", extra: bytes = b"") -> bytes:
    """One part's headers and payload (no delimiter)."""
    fields = [b"Content-Type: image/jpeg", *([b"Content-Length: %d" % len(jpeg)] if length else []), *extra.split()]
    return b"".join(f + newline for f in fields) + newline + jpeg


def stream(frames: list[bytes], *, length: bool, newline: bytes, before: bool) -> bytes:
    """A body as a server writes it: the delimiter after each frame (edge, §4 of docs/interface.md)
    or before it (mjpg-streamer and many cameras)."""
    delim = b"--" + TOKEN + newline
    parts = [part(f, length=length, newline=newline) for f in frames]
    if before:
        return b"".join(newline + delim + p for p in parts)
    return delim + b"".join(p + newline + delim for p in parts)


def pieces() -> st.SearchStrategy[bytes]:
    frame = st.sampled_from(FRAMES)
    cut = frame.flatmap(lambda f: st.integers(0, len(f)).map(lambda k: f[:k]))
    parts = st.builds(
        part,
        frame,
        length=st.booleans(),
        newline=st.sampled_from([b"\r\n", b"\n"]),
        extra=st.sampled_from([b"", b"X-Timestamp:1.5"]),
    )
    lines = st.sampled_from(
        [
            b"--" + TOKEN + b"\r\n",
            b"\r\n--" + TOKEN + b"\r\n",
            b"--" + TOKEN + b"--\r\n",
            b"--" + TOKEN + b"x\r\n",
            b"Content-Length: 99999999\r\n\r\n",
            b"Content-Length: 5\r\n\r\n",
            b"\r\n",
            b"\xff\xd8",
            b"\xff\xd9",
        ]
    )
    return st.one_of(frame, cut, parts, lines, st.binary(max_size=48))


def split(splitter: MultipartSplitter, data: bytes, cuts: list[int]) -> list[bytes]:
    """Feed `data` cut at `cuts`; every payload returned, checking memory after each read."""
    payloads: list[bytes] = []
    bound = max(splitter.max_part, splitter.max_header)
    last = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        piece = data[last:cut]
        last = cut
        payloads += splitter.feed(piece)
        assert splitter.buffered <= bound + len(piece), (splitter.buffered, len(piece))
    return payloads


garbage = st.lists(pieces(), max_size=10).map(b"".join)
cuts = st.lists(st.integers(0, 8000), max_size=24)


@SETTINGS
@given(garbage, cuts, st.sampled_from([None, TOKEN, b"--" + TOKEN]), st.sampled_from([None, 300]))
def test_payloads_do_not_depend_on_the_chunking(
    data: bytes, cuts: list[int], boundary: bytes | None, max_part: int | None
) -> None:
    def make() -> MultipartSplitter:
        return MultipartSplitter(boundary) if max_part is None else MultipartSplitter(boundary, max_part=max_part)

    whole = split(make(), data, [])
    assert split(make(), data, [c for c in cuts if c < len(data)]) == whole
    if len(data) <= 2000:
        assert split(make(), data, list(range(len(data)))) == whole


@SETTINGS
@given(
    garbage,
    cuts,
    st.sampled_from([None, TOKEN]),
    st.sampled_from([None, 16, 300]),
    st.sampled_from([None, 8, 100]),
)
def test_garbage_never_raises_and_memory_stays_bounded(
    data: bytes, cuts: list[int], boundary: bytes | None, max_part: int | None, max_header: int | None
) -> None:
    limits = {k: v for k, v in (("max_part", max_part), ("max_header", max_header)) if v is not None}
    splitter = MultipartSplitter(boundary, **limits)
    for payload in split(splitter, data, [c for c in cuts if c < len(data)]):
        assert payload, "an empty payload was returned"


@SETTINGS
@given(
    st.lists(st.sampled_from(FRAMES), min_size=1, max_size=5),
    st.booleans(),
    st.sampled_from([b"\r\n", b"\n"]),
    st.booleans(),
    st.sampled_from([None, TOKEN, b"--" + TOKEN]),
    cuts,
)
def test_well_formed_streams_give_back_their_frames(
    frames: list[bytes], length: bool, newline: bytes, before: bool, boundary: bytes | None, cuts: list[int]
) -> None:
    data = stream(frames, length=length, newline=newline, before=before)
    got = split(MultipartSplitter(boundary), data, [c for c in cuts if 0 < c < len(data)])
    assert got == frames


# -- chunking dependences the properties above found (fixed) -------------------------------------


def _split_at(splitter_args: tuple[bytes | None, int | None], data: bytes, cut: int) -> tuple[int, int]:
    """(payloads in one read, payloads when the read is cut at `cut`)."""
    boundary, max_part = splitter_args

    def make() -> MultipartSplitter:
        return MultipartSplitter(boundary) if max_part is None else MultipartSplitter(boundary, max_part=max_part)

    return len(make().feed(data)), len(split(make(), data, [cut]))


def test_boundary_learned_when_a_read_ends_inside_its_dashes() -> None:
    data = b"--" + TOKEN + b"\r\n" + part(FRAMES[0])
    one, two = _split_at((None, None), data, 1)
    assert one == two == 1, f"{one} payload(s) in one read, {two} when the read ends after the first '-'"


def test_boundary_not_learned_from_the_middle_of_a_line() -> None:
    data = b"xx--" + TOKEN + b"\r\n" + part(FRAMES[0])
    one, two = _split_at((None, None), data, 2)
    assert one == two, f"{one} payload(s) in one read, {two} when the read ends after the junk"


def test_a_part_over_max_part_is_discarded_however_it_arrives() -> None:
    data = b"--" + TOKEN + b"\r\n" + part(FRAMES[0], length=False) + b"\r\n--" + TOKEN + b"\r\n"
    max_part = len(FRAMES[0]) // 2
    one, two = _split_at((TOKEN, max_part), data, len(data) // 2)
    assert one == two == 0, f"{one} payload(s) in one read, {two} in two: a part over max_part is discarded"
