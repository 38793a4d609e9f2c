"""`edge.formats.h264` on real H.264: libx264 streams made by ffmpeg (with and without AUDs, four
slices a picture, High profiles with cropping, 4:2:2, 4:4:4, 10 bits, interlaced) and by PyAV
(B-frames), checked against references that share no code with edge: ffprobe for what a stream
is and where FFmpeg's own parser cuts it into access units, FFmpeg's decoder (through PyAV, any
error fatal) for whether what the checker passes decodes.

What `AccessUnitSplitter.flush` guarantees, pinned below: for a producer that writes one unit per
write, every unit but the first comes out at the read that completed it (the first one waits for
the next unit's start, as the number of slices a picture has is not known before); with several
slices a picture and reads as short as one NAL unit, a picture is never cut in the middle while
the slice count does not grow. A flush at a point that is not the end of a unit (a producer
writing a unit in pieces) hands on a cut unit; the splitter notices at the next read, drops the
rest of that unit, counts it (``flush_miscuts``, ``discarded``) and stops flushing units that
large: every unit it returns is then either whole or one of those counted prefixes.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from edge.formats.h264 import (
    MAX_AU_BYTES,
    REASONS,
    START_CODE,
    AccessUnitChecker,
    AccessUnitSplitter,
    CheckedAU,
    H264Error,
    NalType,
    Parameters,
    annexb,
    nal_type,
    nal_units,
    parse_sps,
    split_nals_for_sample,
)
from tests.support.h264 import FRAMES, PROFILE_IDC, decode, probe_stream, probe_units, pyav_x264, split, x264
from tests.support.programs import requires

pytestmark = requires("ffmpeg")

# name -> (stream, frames, display size)
STREAMS = {
    "aud": lambda: x264(),
    "no_aud": lambda: x264(aud=False),
    "four_slices": lambda: x264(slices=4),
    "high_1080p": lambda: x264((1920, 1080), profile="high", params="cabac=1:8x8dct=1"),
    "pyav_b_frames": lambda: pyav_x264(),
}
SIZES = {"aud": (640, 480), "no_aud": (640, 480), "four_slices": (640, 480), "high_1080p": (1920, 1080)}
SIZES["pyav_b_frames"] = (320, 240)
# Streams for the SPS: (x264 arguments, display size); each needs frame cropping or a high-profile field.
SPS_STREAMS: dict[str, tuple[dict[str, Any], tuple[int, int]]] = {
    "high_cropped": ({"size": (640, 360), "profile": "high", "params": "cabac=1:8x8dct=1"}, (640, 360)),
    "high10": ({"size": (640, 360), "pix_fmt": "yuv420p10le"}, (640, 360)),
    "high422_cropped": ({"size": (640, 350), "pix_fmt": "yuv422p"}, (640, 350)),
    "high444_cropped": ({"size": (630, 350), "pix_fmt": "yuv444p"}, (630, 350)),
    "interlaced_cropped": ({"size": (640, 360), "params": "interlaced=1"}, (640, 360)),
}
SHORT = 30  # frames of the streams made only for their SPS


def units_of(name: str) -> list[bytes]:
    return split(STREAMS[name]())


def types(unit: bytes) -> list[int]:
    return [nal_type(nal) for nal in nal_units(unit)]


def sps_of(data: bytes) -> bytes:
    return next(nal for nal in nal_units(data) if nal_type(nal) == NalType.SPS)


def checked_all(units: list[bytes], checker: AccessUnitChecker | None = None) -> list[CheckedAU | str]:
    """What the checker makes of each unit: a `CheckedAU` or the reason it refused it."""
    checker = checker or AccessUnitChecker()
    out: list[CheckedAU | str] = []
    for unit in units:
        try:
            out.append(checker.check(unit))
        except H264Error as exc:
            assert exc.reason in REASONS
            out.append(exc.reason)
    return out


def nal_reads(unit: bytes) -> list[bytes]:
    """`unit` cut just before each of its start codes after the first: one read per NAL unit (its
    start code, the NAL unit, the zero bytes after it)."""
    cuts = [m.start() for m in re.finditer(rb"\x00?\x00\x00\x01", unit)][1:]
    return [unit[a:b] for a, b in zip([0, *cuts], [*cuts, len(unit)], strict=True)]


def strip_parameters(unit: bytes) -> bytes:
    """`unit` without its SPS and PPS, start codes and all."""
    return b"".join(piece for piece in nal_reads(unit) if nal_type(piece.lstrip(b"\x00")[1:]) not in (7, 8))


# ------------------------------------------------------------------------------------------------
# NAL units


def test_nal_units_with_3_and_4_byte_start_codes_and_trailing_zeros() -> None:
    data = b"junk\x00\x00\x00\x01\x09\xf0\x00\x00\x01\x67\x42\x00\x00\x00\x00\x00\x00\x01\x65\x88\x00\x00\x01\x00"
    assert nal_units(data) == [b"\x09\xf0", b"\x67\x42", b"\x65\x88"]
    assert [nal_type(nal) for nal in nal_units(data)] == [NalType.AUD, NalType.SPS, NalType.IDR]
    assert nal_units(b"no start code at all") == []
    nals = nal_units(x264())
    assert annexb(nals).startswith(START_CODE) and nal_units(annexb(nals)) == nals


def test_sample_nal_units_leave_out_aud_and_parameter_sets() -> None:
    key = units_of("aud")[0]
    assert types(key) == [9, 7, 8, 6, 5]
    assert [nal_type(nal) for nal in split_nals_for_sample(key)] == [6, 5]
    assert split_nals_for_sample(key) == nal_units(key)[3:]


# ------------------------------------------------------------------------------------------------
# The splitter


@pytest.mark.parametrize("read", [1, 7, 4096, None], ids=["1", "7", "4096", "all"])
@pytest.mark.parametrize("name", list(STREAMS))
def test_splitter_cuts_where_ffmpeg_does_whatever_the_reads(name: str, read: int | None) -> None:
    data = STREAMS[name]()
    units = split(data, read)
    assert len(units) == FRAMES
    assert b"".join(units) == data, "the units are not the stream's bytes as written"
    offsets = [sum(len(u) for u in units[:k]) for k in range(len(units))]
    assert list(zip(offsets, map(len, units), strict=True)) == probe_units(data), "not ffmpeg's access units"


def test_each_unit_is_one_picture_with_its_parameter_sets() -> None:
    for name in ("aud", "no_aud", "four_slices"):
        units = units_of(name)
        slices = 4 if name == "four_slices" else 1
        for n, unit in enumerate(units):
            kinds = types(unit)
            vcl = [k for k in kinds if k in (1, 5)]
            assert vcl == [5 if n % 30 == 0 else 1] * slices, (name, n, kinds)
            assert (kinds[0] == NalType.AUD) == (name != "no_aud")
            assert (NalType.SPS in kinds) == (n % 30 == 0)


def test_junk_before_the_first_start_code_is_skipped_and_counted() -> None:
    data = x264()
    junk = bytes(range(1, 256)) * 3
    splitter = AccessUnitSplitter()
    units: list[bytes] = []
    for at in range(0, len(junk + data), 1000):
        units += splitter.feed((junk + data)[at : at + 1000])
    last = splitter.end()
    assert last is not None
    assert [*units, last] == split(data)
    assert splitter.skipped_bytes == len(junk) and splitter.frames == FRAMES and splitter.discarded == 0


def test_end_returns_the_last_unit_even_cut_short() -> None:
    data = x264()
    whole = split(data)
    cut = split(data[:-100])
    assert cut[:-1] == whole[:-1] and cut[-1] == whole[-1][:-100]
    splitter = AccessUnitSplitter()
    assert splitter.end() is None
    splitter.feed(b"\x01\x02\x03")
    assert splitter.end() is None and splitter.skipped_bytes == 3


@pytest.mark.parametrize("read", [1, 7, 4096, None], ids=["1", "7", "4096", "all"])
def test_oversized_units_are_discarded_and_the_rest_kept(read: int | None) -> None:
    data = x264()
    whole = split(data)
    limit = 4000
    big = [u for u in whole if len(u) > limit]
    assert 3 <= len(big) < FRAMES  # the key frames, at least
    splitter = AccessUnitSplitter(max_au=limit)
    units: list[bytes] = []
    step = read or len(data)
    for at in range(0, len(data), step):
        units += splitter.feed(data[at : at + step])
        assert splitter.buffered <= limit + 5
    last = splitter.end()
    units += [last] if last is not None else []
    assert units == [u for u in whole if len(u) <= limit]
    assert splitter.discarded == len(big) and splitter.skipped_bytes == sum(map(len, big))


def test_flush_hands_on_each_unit_written_in_one_write_at_once() -> None:
    for name in ("aud", "no_aud", "pyav_b_frames"):
        units = units_of(name)
        splitter = AccessUnitSplitter()
        for n, unit in enumerate(units):
            got = splitter.feed(unit)
            flushed = splitter.flush()
            if n == 0:  # how many slices a picture has is not known yet: it waits for the next unit
                assert (got, flushed) == ([], None), name
            else:
                assert got == ([units[0]] if n == 1 else []), (name, n)
                assert flushed == unit, f"{name}: unit {n} not handed on at its own read"
            assert splitter.flush() is None, "a second flush with nothing new"
        assert splitter.end() is None
        assert splitter.frames == FRAMES and splitter.flush_miscuts == 0 and splitter.skipped_bytes == 0


def test_flush_with_reads_of_one_nal_unit_never_cuts_a_picture_of_several_slices() -> None:
    units = units_of("four_slices")
    splitter = AccessUnitSplitter()
    out: list[tuple[int, bytes]] = []  # (unit being read, unit handed on)
    for n, unit in enumerate(units):
        reads = nal_reads(unit)
        assert len(reads) >= 5  # the AUD and the four slices at least
        for read in reads:
            out += [(n, u) for u in splitter.feed(read)]
            flushed = splitter.flush()
            if flushed is not None:
                out.append((n, flushed))
    assert [u for _, u in out] == units, "a picture was cut or glued to another"
    assert [n for n, _ in out] == [1, *range(1, FRAMES)], "a unit did not come out at its last slice"
    assert splitter.flush_miscuts == 0 and splitter.discarded == 0


def test_flush_in_the_middle_of_a_unit_is_noticed_and_learned_from() -> None:
    data = x264()
    whole = split(data)
    for read in (300, 1000, 4096):
        splitter = AccessUnitSplitter()
        out: list[bytes] = []
        for at in range(0, len(data), read):  # every read "short": the worst a flush can be called
            out += splitter.feed(data[at : at + read])
            flushed = splitter.flush()
            out += [flushed] if flushed is not None else []
        last = splitter.end()
        out += [last] if last is not None else []
        cut = [u for u in out if u not in whole]
        assert all(any(w.startswith(u) for w in whole) for u in cut), "a unit that is not a prefix of one"
        assert 0 < len(cut) == splitter.flush_miscuts == splitter.discarded
        assert len(out) == FRAMES, "the rest of a cut unit came out as a unit of its own"
        assert sum(map(len, out)) + splitter.skipped_bytes == len(data)
        # Each miscut lowers the size flushed: later ones are of smaller units only.
        sizes = [len(u) for u in cut]
        assert sizes == sorted(sizes, reverse=True), sizes


def test_flush_learns_that_pictures_have_more_slices() -> None:
    # Two slices a picture, then four (an encoder restarted with more threads): the first picture
    # with four is flushed after two, the two others are dropped, and from then on pictures wait for four.
    two, four = split(x264(slices=2)), split(x264(slices=4))
    splitter = AccessUnitSplitter()
    out: list[bytes] = []
    for unit in two + four:
        for read in nal_reads(unit):
            out += splitter.feed(read)
            flushed = splitter.flush()
            out += [flushed] if flushed is not None else []
    assert out[:FRAMES] == two
    cut = out[FRAMES]
    assert four[0].startswith(cut) and types(cut).count(5) == 2 and types(four[0]).count(5) == 4
    assert out[FRAMES + 1 :] == four[1:]
    assert splitter.flush_miscuts == 1 and splitter.discarded == 1


# ------------------------------------------------------------------------------------------------
# The SPS


@pytest.mark.parametrize("name", list(SPS_STREAMS))
def test_sps_size_and_codec_agree_with_ffprobe(name: str) -> None:
    kwargs, size = SPS_STREAMS[name]
    data = x264(frames=SHORT, **kwargs)
    assert_sps_matches_ffprobe(data, size)


@pytest.mark.parametrize("name", list(STREAMS))
def test_sps_of_the_streams_agree_with_ffprobe(name: str) -> None:
    assert_sps_matches_ffprobe(STREAMS[name](), SIZES[name])


def assert_sps_matches_ffprobe(data: bytes, size: tuple[int, int]) -> None:
    stream = probe_stream(data)
    info = parse_sps(sps_of(data))
    assert (info.width, info.height) == size == (stream["width"], stream["height"])
    assert info.profile_idc == PROFILE_IDC[stream["profile"]] and info.level_idc == stream["level"]
    assert info.codec == f"avc1.{info.profile_idc:02X}{sps_of(data)[2]:02X}{stream['level']:02X}"
    if stream["profile"] == "Constrained Baseline":
        assert info.constraint_flags & 0x40, "constraint_set1_flag is what makes it Constrained"
    assert info.bit_depth_luma == int(stream.get("bits_per_raw_sample", 8))
    chroma = {"yuv420p": 1, "yuv422p": 2, "yuv444p": 3}.get(stream["pix_fmt"].removesuffix("10le"), 1)
    assert info.chroma_format_idc == chroma


def test_codec_string_of_the_default_stream() -> None:
    assert parse_sps(sps_of(x264())).codec == "avc1.42C01E"  # Constrained Baseline, level 3.0
    assert parse_sps(sps_of(x264((1920, 1080), profile="high", params="cabac=1:8x8dct=1"))).codec == "avc1.640028"


class Bits:
    """The test's own bit reader and writer (strings of "0" and "1"), to rewrite real SPSes."""

    def __init__(self, data: bytes = b"") -> None:
        self.bits = "".join(f"{byte:08b}" for byte in data)
        self.pos = 0

    def u(self, n: int) -> int:
        value = int(self.bits[self.pos : self.pos + n] or "0", 2)
        self.pos += n
        return value

    def ue(self) -> int:
        zeros = len(self.bits[self.pos :]) - len(self.bits[self.pos :].lstrip("0"))
        self.pos += zeros + 1
        return (1 << zeros) - 1 + self.u(zeros)

    def put(self, value: int, n: int) -> None:
        self.bits += format(value, f"0{n}b") if n else ""

    def put_ue(self, value: int) -> None:
        code = bin(value + 1)[2:]
        self.bits += "0" * (len(code) - 1) + code

    def put_se(self, value: int) -> None:
        self.put_ue(2 * value - 1 if value > 0 else -2 * value)

    def to_bytes(self) -> bytes:
        assert len(self.bits) % 8 == 0
        return int(self.bits, 2).to_bytes(len(self.bits) // 8, "big") if self.bits else b""


def unescape(nal: bytes) -> bytes:
    out, zeros = bytearray(), 0
    for byte in nal:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def escape(rbsp: bytes) -> bytes:
    out, zeros = bytearray(), 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def put_scaling_list(bits: Bits, deltas: list[int], size: int) -> None:
    """Writes delta_scale values as 7.3.2.1.1.1 reads them: until the list ends or a scale is 0."""
    last = next_scale = 8
    written = 0
    for _ in range(size):
        if next_scale != 0:
            delta = deltas[written]
            written += 1
            bits.put_se(delta)
            next_scale = (last + delta + 256) % 256
        last = last if next_scale == 0 else next_scale
    assert written == len(deltas), "deltas after the list ended"


SCALING_DELTAS = [
    [1] * 16,  # a full 4x4 list
    [-8],  # scale 0 at once: the default list
    None,  # not present
    [0, 5, -13],  # ends early: 8, 13, 0
    [127, 127, -3, *([1] * 13)],
    None,
    [(-1) ** k * 3 for k in range(64)],  # a full 8x8 list
    [-8],
    [2] * 64,
    None,
    [0, -8],
    [5] * 64,
]


def rewrite_sps(nal: bytes) -> tuple[bytes, int]:
    """A real x264 SPS (picture order count type 2, no scaling matrix) rewritten with every scaling
    list kind and picture order count type 1 with a cycle: the same pictures decode with it. Also
    where (in bytes, not counting emulation prevention) the fields the SPS kept as they were begin."""
    old = Bits(unescape(nal[1:]))
    new = Bits()
    profile = old.u(8)
    new.put(profile, 8)
    new.put(old.u(16), 16)  # constraint flags, level
    new.put_ue(old.ue())  # seq_parameter_set_id
    assert profile in (100, 244), "a high profile: it has the scaling matrix flag"
    chroma = old.ue()
    new.put_ue(chroma)
    if chroma == 3:
        new.put(old.u(1), 1)
    for _ in range(2):
        new.put_ue(old.ue())  # bit depths
    new.put(old.u(1), 1)  # qpprime_y_zero_transform_bypass_flag
    assert old.u(1) == 0, "x264 puts no scaling matrix in the SPS"
    new.put(1, 1)
    for i in range(8 if chroma != 3 else 12):
        deltas = SCALING_DELTAS[i]
        new.put(deltas is not None, 1)
        if deltas is not None:
            put_scaling_list(new, deltas, 16 if i < 6 else 64)
    new.put_ue(old.ue())  # log2_max_frame_num_minus4
    assert old.ue() == 2, "x264 without B-frames orders pictures by frame_num (type 2)"
    new.put_ue(1)
    new.put(1, 1)  # delta_pic_order_always_zero_flag: slice headers as with type 2
    # offset_for_non_ref_pic: every picture x264 makes without B-frames is a reference, so any value
    # decodes the same; a large one puts zero bytes, and emulation prevention, in the SPS.
    new.put_se(-(1 << 30))
    new.put_se(0)  # offset_for_top_to_bottom_field
    cycle = [2, 1, 3]
    new.put_ue(len(cycle))
    for offset in cycle:
        new.put_se(offset)
    kept = 1 + len(new.bits) // 8
    new.bits += old.bits[old.pos :]  # the rest (reference frames, picture size...) as it was
    new.bits = new.bits.rstrip("0")  # the old alignment zeros; then realigned
    new.bits += "0" * (-len(new.bits) % 8)
    return nal[:1] + escape(new.to_bytes()), kept


@pytest.mark.parametrize("name", ["high_cropped", "high444_cropped"])
def test_sps_with_scaling_lists_and_order_count_cycle_is_read_past(name: str) -> None:
    kwargs, size = SPS_STREAMS[name]
    data = x264(frames=SHORT, **kwargs)
    old = sps_of(data)
    new, kept = rewrite_sps(old)
    assert 0 <= new.find(b"\x00\x00\x03") < kept, "no emulation prevention byte before the picture size"
    info = parse_sps(new)
    assert (info.width, info.height) == size and info.codec == parse_sps(old).codec
    rewritten = [unit.replace(old, new) for unit in split(data)]
    assert sum(new in unit for unit in rewritten) == 1
    # FFmpeg reads the rewritten SPS the same way: the pictures decode at the size edge read.
    assert decode(rewritten) == [size] * SHORT


def test_sps_emulation_prevention_bytes_are_removed_wherever_they_fall() -> None:
    # Large picture order count offsets make runs of zero bits, so the SPS gets emulation prevention
    # bytes; shifting them by a bit at a time puts those bytes at every bit alignment.
    with_epb = 0
    for sps_id in range(8):
        for log2_frame_num in range(8):
            bits = Bits()
            bits.put(0x42C01E, 24)
            bits.put_ue(sps_id)
            bits.put_ue(log2_frame_num)
            bits.put_ue(1)  # pic_order_cnt_type
            bits.put(1, 1)
            bits.put_se(-(1 << 30))  # offset_for_non_ref_pic
            bits.put_se(1 << 29)  # offset_for_top_to_bottom_field
            bits.put_ue(1)  # a cycle of one picture
            bits.put_se(1 << 28)
            bits.put_ue(1)  # max_num_ref_frames
            bits.put(0, 1)
            bits.put_ue(39)  # 40 macroblocks: 640
            bits.put_ue(29)  # 30: 480
            bits.bits += "1101"  # frame_mbs_only, direct_8x8_inference, no cropping, VUI; then the stop bit
            bits.bits += "0" * (-len(bits.bits) % 8)
            nal = b"\x67" + escape(bits.to_bytes())
            with_epb += b"\x00\x00\x03" in nal
            info = parse_sps(nal)
            assert (info.width, info.height, info.codec) == (640, 480, "avc1.42C01E"), (sps_id, log2_frame_num)
    assert with_epb == 64


def test_broken_sps_raises_h264_error() -> None:
    sps = sps_of(x264())
    for bad, reason in [
        (b"", "garbage"),
        (b"\x68\x42\x00\x1e", "garbage"),  # a PPS header
        (b"\xe7" + sps[1:], "garbage"),  # forbidden_zero_bit
        (sps[:5], "garbage"),  # cut before the picture size
        (sps[:4] + b"\x00" * 8 + b"\x01", "garbage"),  # an Exp-Golomb code of 64 bits
    ]:
        with pytest.raises(H264Error) as raised:
            parse_sps(bad)
        assert raised.value.reason == reason, (bad.hex(), raised.value)
    huge = Bits()
    huge.put(0x42C01E, 24)  # Constrained Baseline 3.0
    for value in (0, 0, 2, 1):  # seq_parameter_set_id, log2_max_frame_num_minus4, POC type 2, one reference
        huge.put_ue(value)
    huge.put(0, 1)  # gaps_in_frame_num_value_allowed_flag
    huge.put_ue(1023)  # pic_width_in_mbs_minus1: 16384 pixels wide
    huge.put_ue(29)
    huge.bits += "1101"  # frame_mbs_only, direct_8x8_inference, no cropping, VUI; then the stop bit
    huge.bits += "0" * (-len(huge.bits) % 8)
    with pytest.raises(H264Error) as raised:
        parse_sps(b"\x67" + huge.to_bytes())
    assert raised.value.reason == "unsupported"


# ------------------------------------------------------------------------------------------------
# The checker


@pytest.mark.parametrize("name", list(STREAMS))
def test_every_unit_passes_and_decodes(name: str) -> None:
    units = units_of(name)
    checked = checked_all(units)
    assert all(isinstance(c, CheckedAU) for c in checked), checked
    passed = [c for c in checked if isinstance(c, CheckedAU)]
    assert [c.data for c in passed] == units, "a unit that had its parameter sets was changed"
    assert [c.key for c in passed] == [n % 30 == 0 for n in range(FRAMES)]
    assert [c.changed for c in passed] == [True] + [False] * (FRAMES - 1)
    params = passed[0].params
    assert isinstance(params, Parameters) and all(c.params is params for c in passed)
    assert (params.width, params.height) == SIZES[name] and params.codec == parse_sps(params.sps).codec
    assert params.sps == sps_of(units[0]) and nal_type(params.pps) == NalType.PPS
    assert decode(c.data for c in passed) == [SIZES[name]] * FRAMES


@pytest.mark.parametrize("name", ["aud", "no_aud"])
def test_parameter_sets_are_put_back_in_front_of_key_frames_that_lack_them(name: str) -> None:
    units = units_of(name)
    stripped = [strip_parameters(u) if n % 30 == 0 and n else u for n, u in enumerate(units)]
    for n in (30, 60):
        assert NalType.SPS not in types(stripped[n]) and NalType.PPS not in types(stripped[n])
        assert types(stripped[n]) == [k for k in types(units[n]) if k not in (7, 8)]
    passed = checked_all(stripped)
    assert all(isinstance(c, CheckedAU) for c in passed)
    # Back where x264 wrote them (after the AUD, before the SEI), byte for byte.
    assert [c.data for c in passed if isinstance(c, CheckedAU)] == units
    # And a decoder that starts at such a key frame can decode it.
    assert decode([units[30]]) == [SIZES[name]]
    with pytest.raises(AssertionError):
        decode([stripped[30]])


def test_parameter_sets_are_put_after_junk_before_the_start_code() -> None:
    units = units_of("no_aud")
    checker = AccessUnitChecker()
    params = checker.check(units[0]).params
    key = strip_parameters(units[30])
    assert key.startswith(b"\x00\x00\x01\x65"), "x264 writes a 3-byte start code there"
    inserted = START_CODE + params.sps + START_CODE + params.pps
    assert checker.check(b"\x09junk" + key).data == b"\x09junk" + inserted + key
    # A zero byte before the start code makes it a 4-byte one: it stays with it.
    assert checker.check(b"\x09junk\x00" + key).data == b"\x09junk" + inserted + b"\x00" + key


def test_a_key_frame_without_parameter_sets_before_any() -> None:
    units = units_of("aud")
    checker = AccessUnitChecker()
    with pytest.raises(H264Error) as raised:
        checker.check(strip_parameters(units[0]))
    assert raised.value.reason == "no_parameters"
    assert checker.check(units[0]).key


def test_delta_frames_wait_for_the_first_key_frame() -> None:
    units = units_of("aud")[10:]  # a stream joined in the middle of a key-frame interval
    checked = checked_all(units)
    assert checked[:20] == ["waiting_for_key"] * 20
    first = checked[20]
    assert isinstance(first, CheckedAU) and first.key and first.changed
    assert all(isinstance(c, CheckedAU) for c in checked[20:])
    assert decode(c.data for c in checked if isinstance(c, CheckedAU)) == [(640, 480)] * 60


def test_reset_forgets_the_parameters_and_the_key_frame() -> None:
    units = units_of("aud")
    checker = AccessUnitChecker()
    for unit in units[:3]:
        checker.check(unit)
    checker.reset()
    assert checked_all(units[3:5], checker) == ["waiting_for_key"] * 2
    with pytest.raises(H264Error) as raised:
        checker.check(strip_parameters(units[30]))
    assert raised.value.reason == "no_parameters"


def test_garbage_and_truncated_units_are_refused() -> None:
    units = units_of("aud")
    key = units[0]
    nals = nal_units(key)
    cases = [
        (b"", "garbage"),
        (b"hello, world" * 10, "garbage"),
        (b"\x00\x00\x01\x00\x00\x01", "garbage"),  # empty NAL units only
        (START_CODE + b"\xe5\x88\x84", "garbage"),  # forbidden_zero_bit
        (annexb(nals[:3]), "truncated"),  # AUD, SPS, PPS: no picture
        (annexb([*nals[:4], b"\x65"]), "truncated"),  # a slice of its header only
        (b"\x00" * MAX_AU_BYTES + key, "oversized"),
        (annexb([nals[0], b"\x67\x42\x00", *nals[2:]]), "unsupported"),  # an SPS cut short
    ]
    for unit, reason in cases:
        checker = AccessUnitChecker()
        with pytest.raises(H264Error) as raised:
            checker.check(unit)
        assert raised.value.reason == reason, (unit[:16].hex(), raised.value)
        assert isinstance(raised.value, ValueError) and str(raised.value).startswith(reason)


def test_deltas_after_a_refused_picture_wait_for_the_next_key_frame() -> None:
    units = units_of("aud")
    nals = nal_units(units[5])
    broken = annexb([nals[0], bytes([nals[1][0] | 0x80]) + nals[1][1:]])  # forbidden bit in the slice
    checked = checked_all([*units[:5], broken, *units[6:]])
    assert checked[5:30] == ["garbage"] + ["waiting_for_key"] * 24
    assert all(isinstance(c, CheckedAU) for c in checked[:5] + checked[30:])
    assert decode(c.data for c in checked if isinstance(c, CheckedAU)) == [(640, 480)] * 65


def test_resolution_change() -> None:
    first, second = x264(), x264((320, 240))
    units = split(first + second)
    assert units == split(first) + split(second)
    checked = checked_all(units)
    passed = [c for c in checked if isinstance(c, CheckedAU)]
    assert len(passed) == 2 * FRAMES
    assert [n for n, c in enumerate(passed) if c.changed] == [0, FRAMES]
    assert passed[FRAMES].key and (passed[FRAMES].params.width, passed[FRAMES].params.height) == (320, 240)
    assert passed[FRAMES - 1].params.codec == "avc1.42C01E" and passed[FRAMES].params.codec == "avc1.42C00D"
    assert decode(c.data for c in passed) == [(640, 480)] * FRAMES + [(320, 240)] * FRAMES


def test_new_parameters_before_a_delta_frame_wait_for_the_key_frame() -> None:
    # An encoder restarted with another size whose first unit after its parameter sets was lost: the
    # new SPS and PPS arrive in front of a delta frame, which a decoder cannot decode; neither can it
    # the deltas after it, until the next key frame.
    first, second = split(x264()), split(x264((320, 240)))
    nals = nal_units(second[0])
    with_new_parameters = annexb([*nals[:3], *nal_units(second[1])[1:]])  # AUD, SPS, PPS, the delta
    units = first + [with_new_parameters] + second[2:]
    checked = checked_all(units)
    assert checked[FRAMES : FRAMES + 29] == ["waiting_for_key"] * 29
    key = checked[FRAMES + 29]
    assert isinstance(key, CheckedAU) and key.key and key.changed and key.params.width == 320
    passed = [c for c in checked if isinstance(c, CheckedAU)]
    assert decode(c.data for c in passed) == [(640, 480)] * FRAMES + [(320, 240)] * (FRAMES - 30)


def test_reasons() -> None:
    assert REASONS == ("garbage", "truncated", "no_parameters", "waiting_for_key", "oversized", "unsupported")
    error = H264Error("garbage", "detail")
    assert error.reason == "garbage" and error.detail == "detail"
