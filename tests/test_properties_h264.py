"""Property-based tests of `edge.formats.h264`, the parser of what an H.264 ``pipe:`` camera
writes, in process (hypothesis).

Random bytes and mutations of real libx264 streams (bits flipped, bytes cut out, junk or start
codes put in, the stream cut short), read in arbitrary pieces: the splitter never raises, every
byte it is given is returned in a unit, skipped or held back, it holds at most ``max_au`` plus a
start code and NAL header, and the units it returns do not depend on how the reads cut the
stream (default and small unit limits; `flush` is not called there, as it answers to the reads
by design). The checker raises nothing but `H264Error`, passes units that are the input with at
most the parameter sets put in, and never passes a delta frame where a decoder could not start:
the first unit it passes, and any with new parameters, are key frames. `parse_sps` raises
nothing but `H264Error` on random or mutated SPS bytes.
"""

from __future__ import annotations

import functools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.formats.h264 import (
    MAX_AU_BYTES,
    REASONS,
    START_CODE,
    AccessUnitChecker,
    AccessUnitSplitter,
    CheckedAU,
    H264Error,
    NalType,
    nal_type,
    nal_units,
    parse_sps,
)
from tests.support.h264 import x264
from tests.support.programs import requires

pytestmark = requires("ffmpeg")

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Slack over max_au: a start code with its zero byte and the two NAL bytes read before a decision.
HELD_BACK = 5


@functools.cache
def real() -> list[bytes]:
    """Small real streams: with AUDs, without, two slices a picture, 4:4:4 High."""
    size = (96, 64)
    return [
        x264(size, frames=8),
        x264(size, frames=8, aud=False),
        x264(size, frames=8, slices=2),
        x264(size, frames=8, pix_fmt="yuv444p"),
    ]


@functools.cache
def real_sps() -> list[bytes]:
    return [next(n for n in nal_units(stream) if nal_type(n) == NalType.SPS) for stream in real()]


@st.composite
def mutated(draw: st.DrawFn, source: list[bytes] | None = None) -> bytes:
    """A real stream (or SPS) with up to four mutations."""
    data = bytearray(draw(st.sampled_from(source or real())))
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "delete", "insert", "start_code", "truncate"]))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "start_code":
            data[at:at] = draw(st.sampled_from([b"\x00\x00\x01", b"\x00\x00\x00\x01"])) + draw(st.binary(max_size=3))
        else:
            del data[at:]
    return bytes(data)


streams = st.one_of(st.binary(max_size=4096), mutated())
limits = st.sampled_from([8, 64, 700, MAX_AU_BYTES])


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at the given offsets (taken modulo its length)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def run(splitter: AccessUnitSplitter, reads: list[bytes], flush: list[bool] | None = None) -> list[bytes]:
    units: list[bytes] = []
    fed = 0
    for n, read in enumerate(reads):
        units += splitter.feed(read)
        fed += len(read)
        if flush and flush[n % len(flush)]:
            unit = splitter.flush()
            units += [unit] if unit is not None else []
        assert splitter.buffered <= splitter.max_au + HELD_BACK, (splitter.buffered, splitter.max_au)
        assert sum(map(len, units)) + splitter.skipped_bytes + splitter.buffered == fed, "bytes lost or made up"
    last = splitter.end()
    units += [last] if last is not None else []
    assert splitter.buffered == 0 and sum(map(len, units)) + splitter.skipped_bytes == fed
    assert splitter.frames == len(units)
    return units


@SETTINGS
@given(streams, st.lists(st.integers(0, 1 << 16), max_size=40), limits)
def test_units_do_not_depend_on_the_reads(data: bytes, cuts: list[int], limit: int) -> None:
    whole = AccessUnitSplitter(max_au=limit)
    expected = run(whole, [data])
    cut = AccessUnitSplitter(max_au=limit)
    assert run(cut, pieces(data, cuts)) == expected
    assert (cut.discarded, cut.skipped_bytes) == (whole.discarded, whole.skipped_bytes)
    assert all(len(unit) <= limit for unit in expected)


@SETTINGS
@given(streams, st.lists(st.integers(0, 1 << 16), max_size=40), limits, st.lists(st.booleans(), min_size=1))
def test_flush_anywhere_loses_nothing(data: bytes, cuts: list[int], limit: int, flush: list[bool]) -> None:
    splitter = AccessUnitSplitter(max_au=limit)
    units = run(splitter, pieces(data, cuts), flush)
    assert all(len(unit) <= limit for unit in units)
    assert splitter.flush_miscuts <= splitter.discarded


@SETTINGS
@given(st.binary(max_size=2048))
def test_one_byte_reads_of_random_bytes(data: bytes) -> None:
    assert run(AccessUnitSplitter(), [data[i : i + 1] for i in range(len(data))]) == run(AccessUnitSplitter(), [data])


def check(checker: AccessUnitChecker, unit: bytes) -> CheckedAU | None:
    try:
        return checker.check(unit)
    except H264Error as exc:
        assert exc.reason in REASONS
        return None


@SETTINGS
@given(st.lists(st.one_of(st.binary(max_size=512), mutated()), min_size=1, max_size=4))
def test_checker_raises_only_h264_error(streams: list[bytes]) -> None:
    checker = AccessUnitChecker()
    passed: list[CheckedAU] = []
    for data in streams:
        splitter = AccessUnitSplitter()
        units = splitter.feed(data)
        last = splitter.end()
        for unit in [*units, *([last] if last is not None else [])]:
            out = check(checker, unit)
            if out is None:
                continue
            passed.append(out)
            nals = nal_units(unit)
            assert out.key == any(nal_type(n) == NalType.IDR for n in nals)
            assert any(1 <= nal_type(n) <= 5 for n in nals)  # a slice or a data partition
            if out.data != unit:  # only the parameter sets put in front of a key frame
                assert out.key
                inserted = START_CODE + out.params.sps + START_CODE + out.params.pps
                at = out.data.find(inserted)
                assert at >= 0 and out.data[:at] + out.data[at + len(inserted) :] == unit
            assert out.params.width > 0 and out.params.height > 0
    if passed:
        assert passed[0].key and passed[0].changed, "the first unit passed is not a key frame"
    assert all(c.key for c in passed if c.changed), "new parameters on a delta frame"


@SETTINGS
@given(st.binary(max_size=256))
def test_checker_on_random_bytes(data: bytes) -> None:
    check(AccessUnitChecker(), data)
    check(AccessUnitChecker(), b"\x00\x00\x00\x01" + data)


def parsed(nal: bytes) -> None:
    try:
        info = parse_sps(nal)
    except H264Error as exc:
        assert exc.reason in REASONS
        return
    assert 0 < info.width <= 8192 and 0 < info.height <= 8192
    assert info.codec.startswith("avc1.") and len(info.codec) == 11


@SETTINGS
@given(st.binary(max_size=128))
def test_parse_sps_of_random_bytes(data: bytes) -> None:
    parsed(data)
    parsed(b"\x67" + data)


@SETTINGS
@given(st.data())
def test_parse_sps_of_mutated_sps(data: st.DataObject) -> None:
    parsed(data.draw(mutated(real_sps())))
