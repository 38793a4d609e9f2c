"""H.264 passthrough: an Annex-B byte stream (``rpicam-vid --codec h264 -o -``, ``ffmpeg -c copy -f
h264 -``) cut into access units, each checked before anyone sees it, and the sequence parameter set
read for the picture size and the RFC 6381 codec string. Pure bytes in, bytes out.

An access unit is one picture: its slices plus the AUD, SPS, PPS and SEI NAL units that belong to
it. Viewers get units whole, and only from a key frame on, so `AccessUnitSplitter` finds where a
unit ends (ITU-T H.264 7.4.1.2.3) and `AccessUnitChecker` refuses what a decoder cannot start
from: units without a picture, delta frames before a key frame, key frames without parameter
sets. Cameras send parameter sets once or only before some key frames; the checker keeps the
latest ones and puts them in front of a key frame that lacks them, so every key frame is a place a
new viewer can start.

Nothing here decodes slices or loops over picture data in Python: NAL units are found with
``bytes.find`` and only their first two bytes are looked at, except the few bytes of an SPS.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, get_args

START_CODE: Final = b"\x00\x00\x00\x01"
_START3: Final = b"\x00\x00\x01"  # the start code proper; a zero byte in front of it is optional


class NalType(enum.IntEnum):
    """The NAL unit types this module acts on (`nal_type` returns any of 0..31)."""

    SLICE = 1
    IDR = 5
    SEI = 6
    SPS = 7
    PPS = 8
    AUD = 9


#: An access unit larger than this is discarded. A 4K intra frame at a high bit rate is about 1 MB;
#: a stream without unit boundaries must not make the splitter buffer without limit.
MAX_AU_BYTES: Final = 4 * 1024 * 1024

Reason = Literal[
    "garbage",  # not H.264: no NAL unit, a forbidden bit set, a nonsensical SPS
    "truncated",  # no picture in the unit, or its last slice cut to nothing
    "no_parameters",  # a key frame before any SPS and PPS
    "waiting_for_key",  # a delta frame with no key frame since the start or since the parameters changed
    "oversized",  # larger than the unit size limit
    "unsupported",  # an SPS this module cannot read (or a picture larger than 8192 pixels)
]
#: Every `H264Error.reason`, e.g. to pre-create a Prometheus label set.
REASONS: Final[tuple[Reason, ...]] = get_args(Reason)


class H264Error(ValueError):
    """An access unit (or SPS) that must not be used. ``reason`` is one of `REASONS` (a metric
    label); ``detail`` says what was wrong, for the log."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: Reason = reason
        self.detail = detail


_VCL: Final = frozenset({1, 2, 3, 4, 5})  # coded slices (and data partitions)
# Slices whose header begins with first_mb_in_slice (partitions B and C begin with slice_id).
_FIRST_MB: Final = frozenset({1, 2, 5})
# Types that begin a new access unit when they follow the current one's slices (7.4.1.2.3).
_AU_PREFIX: Final = frozenset({6, 7, 8, 14, 15, 16, 17, 18})


def _spans(data: bytes | bytearray) -> list[tuple[int, int]]:
    """(start, end) of each NAL unit of an Annex-B buffer: just after its start code, and before the
    zero bytes that trail it (a NAL unit never ends with a zero byte, 7.4.1)."""
    spans: list[tuple[int, int]] = []
    i = data.find(_START3)
    while i >= 0:
        start = i + 3
        i = data.find(_START3, start)
        end = len(data) if i < 0 else i
        # rstrip runs in C: a hostile run of zeros costs no Python loop.
        end = start + len(data[start:end].rstrip(b"\x00"))
        if end > start:
            spans.append((start, end))
    return spans


def nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B buffer (3- or 4-byte start codes), without their start codes and
    trailing zero bytes. Bytes before the first start code are ignored, and so are empty units."""
    return [data[start:end] for start, end in _spans(data)]


def nal_type(nal: bytes) -> int:
    """The type of a NAL unit (its header included): 0..31, see `NalType`."""
    return nal[0] & 0x1F


def annexb(nals: Iterable[bytes]) -> bytes:
    """NAL units (without start codes) as an Annex-B buffer, each after a 4-byte start code."""
    return b"".join(START_CODE + nal for nal in nals)


def split_nals_for_sample(au: bytes) -> list[bytes]:
    """The NAL units that go into an MP4 sample: the unit's, minus the AUD, SPS and PPS (an MP4
    carries the parameter sets in its ``avcC`` box, and has no use for delimiters)."""
    return [nal for nal in nal_units(au) if nal[0] & 0x1F not in (NalType.AUD, NalType.SPS, NalType.PPS)]


# ---------------------------------------------------------------------------------------------------------------
# Sequence parameter set (7.3.2.1.1)

#: Largest picture side accepted; H.264 level 6.2 tops out at 8192x4320.
MAX_DIMENSION: Final = 8192
# Profiles whose SPS carries chroma_format_idc, bit depths and scaling matrices.
_HIGH_PROFILES: Final = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
# An SPS needs at most a few kilobytes even with every scaling list and a full POC cycle; reading
# no further bounds the work a hostile "SPS" of megabytes can cause.
_MAX_SPS_BYTES: Final = 16 * 1024
_EMULATION_PREVENTION: Final = re.compile(rb"\x00\x00\x03")
_MAX_LEADING_ZEROS: Final = 31  # ue(v) values are 32-bit


@dataclass(frozen=True, slots=True)
class Sps:
    """What edge needs from a sequence parameter set: the bytes of the codec string, and the
    picture size a decoder shows (after frame cropping). The chroma format and bit depths go
    into an MP4's ``avcC`` box for the high profiles."""

    profile_idc: int
    constraint_flags: int
    level_idc: int
    width: int
    height: int
    chroma_format_idc: int = 1
    bit_depth_luma: int = 8
    bit_depth_chroma: int = 8

    @property
    def codec(self) -> str:
        """The RFC 6381 codec string, e.g. ``avc1.42C01E`` (profile, constraint flags, level)."""
        return f"avc1.{self.profile_idc:02X}{self.constraint_flags:02X}{self.level_idc:02X}"


class _Bits:
    """A big-endian bit reader over an RBSP; running out of bits is a broken SPS."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0
        self._end = len(data) * 8

    def u(self, n: int) -> int:
        if self._pos + n > self._end:
            raise H264Error("garbage", f"SPS ends after {self._end} bits")
        value = 0
        data, pos = self._data, self._pos
        for p in range(pos, pos + n):
            value = value << 1 | (data[p >> 3] >> (7 - (p & 7))) & 1
        self._pos = pos + n
        return value

    def flag(self) -> bool:
        return self.u(1) == 1

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > _MAX_LEADING_ZEROS:
                raise H264Error("garbage", "Exp-Golomb code longer than 32 bits in the SPS")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) >> 1 if k & 1 else -(k >> 1)


def _at_most(name: str, value: int, limit: int) -> int:
    if value > limit:
        raise H264Error("garbage", f"SPS {name} is {value}, at most {limit} allowed")
    return value


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    """Reads past one scaling_list() (7.3.2.1.1.1): delta-coded, ending early at a zero scale."""
    last = next_scale = 8
    for _ in range(size):
        if next_scale != 0:
            delta = bits.se()
            if not -128 <= delta <= 127:
                raise H264Error("garbage", f"SPS scaling list delta {delta} outside -128..127")
            next_scale = (last + delta + 256) % 256
        if next_scale == 0:  # the rest of the list repeats the last scale: no more bits
            return
        last = next_scale


def parse_sps(nal: bytes) -> Sps:
    """Reads a sequence parameter set NAL unit (its 1-byte header included) up to the frame cropping;
    the VUI that may follow is not needed. Raises `H264Error` ("garbage" for what is not a valid SPS,
    "unsupported" for a picture larger than `MAX_DIMENSION`)."""
    if not nal or nal[0] & 0x1F != NalType.SPS:
        raise H264Error("garbage", f"not an SPS NAL unit (header {nal[:1].hex() or 'missing'})")
    if nal[0] & 0x80:
        raise H264Error("garbage", "SPS with forbidden_zero_bit set")
    rbsp = _EMULATION_PREVENTION.sub(b"\x00\x00", nal[1:_MAX_SPS_BYTES])
    bits = _Bits(rbsp)
    profile_idc, constraint_flags, level_idc = bits.u(8), bits.u(8), bits.u(8)
    _at_most("seq_parameter_set_id", bits.ue(), 31)
    chroma_format_idc, separate_colour_plane, bit_depth_luma, bit_depth_chroma = 1, False, 8, 8
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = _at_most("chroma_format_idc", bits.ue(), 3)
        if chroma_format_idc == 3:
            separate_colour_plane = bits.flag()
        bit_depth_luma = 8 + _at_most("bit_depth_luma_minus8", bits.ue(), 6)
        bit_depth_chroma = 8 + _at_most("bit_depth_chroma_minus8", bits.ue(), 6)
        bits.flag()  # qpprime_y_zero_transform_bypass_flag
        if bits.flag():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if bits.flag():  # seq_scaling_list_present_flag[i]
                    _skip_scaling_list(bits, 16 if i < 6 else 64)
    _at_most("log2_max_frame_num_minus4", bits.ue(), 12)
    poc_type = _at_most("pic_order_cnt_type", bits.ue(), 2)
    if poc_type == 0:
        _at_most("log2_max_pic_order_cnt_lsb_minus4", bits.ue(), 12)
    elif poc_type == 1:
        bits.flag()  # delta_pic_order_always_zero_flag
        bits.se()  # offset_for_non_ref_pic
        bits.se()  # offset_for_top_to_bottom_field
        for _ in range(_at_most("num_ref_frames_in_pic_order_cnt_cycle", bits.ue(), 255)):
            bits.se()  # offset_for_ref_frame[i]
    _at_most("max_num_ref_frames", bits.ue(), 16)
    bits.flag()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_map_units = bits.ue() + 1
    frame_mbs_only = bits.flag()
    if not frame_mbs_only:
        bits.flag()  # mb_adaptive_frame_field_flag
    bits.flag()  # direct_8x8_inference_flag
    # Each map unit is a macroblock pair when fields may be coded (frame_mbs_only_flag 0).
    coded_width, coded_height = width_mbs * 16, height_map_units * 16 * (1 if frame_mbs_only else 2)
    if coded_width > MAX_DIMENSION or coded_height > MAX_DIMENSION:
        raise H264Error("unsupported", f"SPS picture of {coded_width}x{coded_height} macroblock pixels")
    width, height = coded_width, coded_height
    if bits.flag():  # frame_cropping_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        # Crop offsets count chroma samples (and field rows), 7.4.2.1.1 Table 6-1.
        if separate_colour_plane or chroma_format_idc == 0:
            unit_x, unit_y = 1, 1
        else:
            unit_x, unit_y = (2, 2) if chroma_format_idc == 1 else (2, 1) if chroma_format_idc == 2 else (1, 1)
        unit_y *= 1 if frame_mbs_only else 2
        width -= (left + right) * unit_x
        height -= (top + bottom) * unit_y
    if width <= 0 or height <= 0:
        raise H264Error("garbage", f"SPS crops its {coded_width}x{coded_height} picture to {width}x{height}")
    bits.flag()  # vui_parameters_present_flag: every SPS has this bit, so one without it is cut short
    return Sps(
        profile_idc, constraint_flags, level_idc, width, height, chroma_format_idc, bit_depth_luma, bit_depth_chroma
    )


# ---------------------------------------------------------------------------------------------------------------
# Access units out of a byte stream

# Splitter states.
_SEEK: Final = 0  # before any start code (or after a flush): bytes before the next one are junk
_AU: Final = 1  # collecting an access unit (or dropping one, see _dropping)


class AccessUnitSplitter:
    """Cuts an Annex-B byte stream (as a pipe delivers it, in arbitrary reads) into access units.

    A unit ends where the next begins (7.4.1.2.3): at an access unit delimiter; at an SEI, SPS,
    PPS (or type 14..18) after the unit's slices; at a slice whose first_mb_in_slice is 0 after
    the unit's slices. So `feed` returns a unit once the next one starts: one frame period late.
    Units are returned as the producer wrote them, start codes and all; where two units meet, the
    zero bytes before the next start code stay with the previous unit, except the one that makes
    a 4-byte start code. Returned units, bytes skipped and bytes held back add up to the input.

    `flush` hands on the unit held back at once, for a producer that writes one unit per write
    (rpicam-vid, ffmpeg ``-f h264``) when a read came up short. It has to guess that the unit is
    complete, and guesses only when that is likely: the unit ends with a slice, the buffer does
    not end with a zero byte (a NAL unit never does, a start code in the making does), and the
    unit has as many slices as the most any unit delimited by its successor has had. So the first
    unit of a stream is never flushed (how many slices a picture has is not known yet), and a
    stream with several slices per picture is flushed only once its last slice is there, however
    the reads cut it. A wrong guess shows up in what comes next (the rest of a NAL unit instead of
    a start code, or a slice that continues the picture): that rest is dropped, counted in
    ``discarded`` and ``flush_miscuts``, and the splitter guesses more carefully from then on
    (more slices, or only units smaller than the one cut short).

    Every byte is looked at about once however the stream is chunked: the start code search
    resumes where it stopped, and a start code cut by a read is kept for the next one. Memory stays
    below ``max_au`` plus a start code and NAL header: a unit growing past it is discarded and the
    splitter skips what is left of it up to the next unit's start.

    Counters: ``frames`` units returned; ``discarded`` units thrown away (too large, or the rest of
    a picture a flush cut); ``skipped_bytes`` every byte not returned in a unit (junk before the
    first start code, discarded units); ``flush_miscuts`` flushes that turned out to be early.
    """

    def __init__(self, max_au: int = MAX_AU_BYTES) -> None:
        if max_au < 8:
            raise ValueError(f"max_au must be at least 8, got {max_au}")
        self.max_au = max_au
        self.frames = 0
        self.discarded = 0
        self.skipped_bytes = 0
        self.flush_miscuts = 0
        self._buf = bytearray()
        self._max_slices = 0  # the most slices any unit delimited by its successor had
        self._flush_limit = max_au + 1  # flush only units smaller than this (lowered by a cut NAL unit)
        self._reset()

    def _reset(self) -> None:
        self._state = _SEEK
        self._scan = 0  # where to search for the next start code
        self._pending = False  # a start code at _scan waits for its NAL header
        self._slices = 0  # VCL NAL units in the current unit
        self._last = -1  # type of the current unit's last NAL unit
        self._dropping = False  # the current unit is being thrown away: its bytes are not kept
        self._after_flush = False  # the buffer was handed on by flush(): what follows must start a unit
        self._flushed_slices = self._flushed_size = 0

    @property
    def buffered(self) -> int:
        """Bytes held back, waiting for the rest of a unit."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Adds ``data``; returns the access units it completed, in order."""
        buf = self._buf
        buf += data
        units: list[bytes] = []
        while True:
            i = buf.find(_START3, self._scan)
            if i < 0:
                self._scan, self._pending = max(self._scan, len(buf) - 2), False
                break
            if i + 4 >= len(buf):  # the NAL header (and a slice's first byte) is not here yet
                self._scan, self._pending = i, True
                break
            self._nal(i, units)
        self._trim()
        return units

    def flush(self) -> bytes | None:
        """The unit held back, if it looks complete (see the class doc), else None. For a source
        whose read came up short: the producer paused after writing, usually a whole unit."""
        buf = self._buf
        if (
            self._state != _AU
            or self._dropping
            or self._pending
            or self._last not in _VCL
            or not self._max_slices
            or self._slices < self._max_slices
            or not buf
            or buf[-1] == 0
            or len(buf) >= self._flush_limit
        ):
            return None
        unit = bytes(buf)
        buf.clear()
        self.frames += 1
        slices = self._slices
        self._reset()
        self._after_flush, self._flushed_slices, self._flushed_size = True, slices, len(unit)
        return unit

    def end(self) -> bytes | None:
        """At the end of the stream: what is held back, as a last unit (it may be cut short: the
        checker says), or None. The splitter is then ready for a new stream, with what it learned
        about slices and writes forgotten (its counters go on)."""
        buf = self._buf
        unit = None
        if self._state == _AU and not self._dropping and buf:
            if len(buf) > self.max_au:
                self.discarded += 1
            else:
                unit = bytes(buf)
                self.frames += 1
        if unit is None:
            self.skipped_bytes += len(buf)
        buf.clear()
        self._max_slices, self._flush_limit = 0, self.max_au + 1
        self._reset()
        return unit

    def _skip(self, n: int) -> None:
        del self._buf[:n]
        self.skipped_bytes += n

    def _nal(self, i: int, units: list[bytes]) -> None:
        """Takes in the NAL unit whose start code is at ``i`` (its first two bytes are there)."""
        buf = self._buf
        kind = buf[i + 3] & 0x1F
        first_slice = kind in _FIRST_MB and buf[i + 4] & 0x80 != 0  # ue(v) first_mb_in_slice == 0
        # Where the unit before this NAL unit ends: a zero byte in front makes a 4-byte start code.
        s = i - 1 if i and buf[i - 1] == 0 else i
        if self._state == _SEEK:
            if self._after_flush and buf[:s].strip(b"\x00"):
                self._miscut(cut_nal=True)
            elif self._after_flush and kind in _VCL and not first_slice:
                self._miscut(cut_nal=False)
            else:
                self._skip(s)
                self._state = _AU
                self._after_flush = False
                self._add(kind, i - s)
                return
            # Taken in below as a NAL unit of the rest being dropped.
        if kind == NalType.AUD or (self._slices and (kind in _AU_PREFIX or first_slice)):
            self._finish(s, units)
            i -= s
        elif not self._dropping and s > self.max_au:
            self._drop()
        self._add(kind, i)

    def _add(self, kind: int, i: int) -> None:
        if kind in _VCL:
            self._slices += 1
        self._last = kind
        self._scan = i + 3

    def _finish(self, size: int, units: list[bytes]) -> None:
        """The current unit is ``buf[:size]``: hands it on (or drops it); a new one starts."""
        if self._dropping:
            if self._after_flush:  # the rest of a flushed picture: it had this many slices
                self._max_slices = max(self._max_slices, self._slices)
                self._after_flush = False
            self._skip(size)
        elif size > self.max_au:
            self.discarded += 1
            self._skip(size)
        else:
            units.append(bytes(self._buf[:size]))
            del self._buf[:size]
            self.frames += 1
            self._max_slices = max(self._max_slices, self._slices)
        self._slices, self._last, self._dropping = 0, -1, False

    def _drop(self) -> None:
        self.discarded += 1
        self._dropping = True

    def _miscut(self, cut_nal: bool) -> None:
        """What follows a flush continues the flushed unit: the rest of its last NAL unit
        (``cut_nal``) or more of its slices. Drops it, up to the next unit's start."""
        self.flush_miscuts += 1
        self._drop()
        self._state = _AU
        self._slices = self._flushed_slices  # counted on, to learn how many slices a picture has
        if cut_nal:  # the producer writes units this large in pieces: flush only smaller ones
            self._flush_limit = min(self._flush_limit, self._flushed_size)

    def _trim(self) -> None:
        """After a read: drops junk (or a unit being dropped), keeping what may begin a start code,
        and starts dropping a unit that is surely too large."""
        buf = self._buf
        if self._pending:
            keep = self._scan - 1 if self._scan and buf[self._scan - 1] == 0 else self._scan
        else:
            keep = max(0, len(buf) - 3)
        if self._state == _SEEK:
            if self._after_flush and buf[:keep].strip(b"\x00"):
                self._miscut(cut_nal=True)
            else:
                self._skip(keep)
                self._scan -= keep
                return
        if not self._dropping and keep > self.max_au:  # the unit is at least `keep` bytes long
            self._drop()
        if self._dropping:
            self._skip(keep)
            self._scan -= keep


# ---------------------------------------------------------------------------------------------------------------
# Checking access units


@dataclass(frozen=True, slots=True)
class Parameters:
    """A stream's parameter sets (NAL units without start codes) and what the SPS says."""

    sps: bytes
    pps: bytes
    info: Sps

    @property
    def codec(self) -> str:
        return self.info.codec

    @property
    def width(self) -> int:
        return self.info.width

    @property
    def height(self) -> int:
        return self.info.height


@dataclass(frozen=True, slots=True)
class CheckedAU:
    """An access unit fit to publish."""

    data: bytes  # Annex-B as the source gave it, with the parameter sets in front of a key frame that lacked them
    key: bool  # contains an IDR slice: a decoder can start here
    params: Parameters
    changed: bool  # the parameters differ from the previous unit's (or there was none): clients re-initialise


class AccessUnitChecker:
    """Checks the access units of one opening of a source, in order, keeping its latest SPS and PPS.

    A unit passes when it has a picture whose last slice is not empty, and a decoder that has seen
    every unit passed since the last key frame can decode it: delta frames are refused until a key
    frame has come since `reset`, since the parameter sets changed (a decoder re-initialised for
    new parameters needs a key frame, and so does Media Source Extensions after a new
    initialisation segment), or since a unit with a picture was refused (the delta frames after it
    may refer to it). A key frame without parameter sets gets the latest ones put in front, after
    its AUD if it starts with one. One SPS and one PPS are kept, the last of each seen: the streams
    cameras send use one of each. Parameter sets in a unit without a picture are kept too.

    What is checked is the framing, not the slices: a unit whose slice data is damaged passes.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forgets everything: for a new opening of the source."""
        self._sps: bytes | None = None
        self._pps: bytes | None = None
        self._info: Sps | None = None
        self._params: Parameters | None = None  # the current parameters, once SPS and PPS are known
        self._published: Parameters | None = None  # those of the last unit passed
        self._keyed = False  # a key frame has passed since the reset, the last change of parameters or refused picture
        self._since = "yet"  # why not, for the log

    def check(self, au: bytes) -> CheckedAU:
        """The unit, fit to publish; raises `H264Error` saying why it is not."""
        if len(au) > MAX_AU_BYTES:
            self._lost(True)
            raise H264Error("oversized", f"{len(au)} bytes, more than {MAX_AU_BYTES}")
        spans = _spans(au)
        if not spans:
            raise H264Error("garbage", f"no NAL unit in {len(au)} bytes")
        kinds = [au[start] for start, _ in spans]
        slices = [n for n, header in enumerate(kinds) if header & 0x1F in _VCL]
        for n, header in enumerate(kinds):
            if header & 0x80:
                self._lost(bool(slices))
                raise H264Error("garbage", f"NAL unit {n} of {len(spans)} has forbidden_zero_bit set")
        has_sps = has_pps = False
        for (start, end), header in zip(spans, kinds, strict=True):
            if header & 0x1F == NalType.SPS:
                has_sps = True
                self._set_sps(au[start:end], bool(slices))
            elif header & 0x1F == NalType.PPS:
                has_pps = True
                self._set_pps(au[start:end])
        if not slices:
            raise H264Error("truncated", f"no slice among its {len(spans)} NAL units")
        start, end = spans[slices[-1]]
        if end - start < 2:
            self._lost(bool(slices))
            raise H264Error("truncated", f"its last slice has {end - start} byte")
        key = any(kinds[n] & 0x1F == NalType.IDR for n in slices)
        params = self._params
        if key:
            if params is None:
                raise H264Error("no_parameters", "a key frame before any SPS and PPS")
            self._keyed = True
            if not (has_sps and has_pps):
                au = self._with_parameters(au, spans, kinds[0] & 0x1F == NalType.AUD, params)
        elif params is None or not self._keyed:
            raise H264Error("waiting_for_key", f"a delta frame, and no key frame {self._since}")
        changed = params != self._published
        self._published = params
        return CheckedAU(au, key, params, changed)

    @staticmethod
    def _with_parameters(au: bytes, spans: list[tuple[int, int]], aud: bool, params: Parameters) -> bytes:
        """``au`` with the SPS and PPS after its AUD, or in front of its first NAL unit (junk before
        that stays before: a decoder skips it, but glued to the PPS it would spoil it)."""
        if aud:
            at = spans[0][1]
        else:
            at = spans[0][0] - 3
            if at and au[at - 1] == 0:
                at -= 1  # keep a 4-byte start code whole
        return au[:at] + START_CODE + params.sps + START_CODE + params.pps + au[at:]

    def _lost(self, picture: bool) -> None:
        """A refused unit held a picture: the delta frames after it may refer to it."""
        if picture:
            self._keyed = False
            self._since = "since a picture was refused"

    def _set_sps(self, nal: bytes, picture: bool) -> None:
        if nal == self._sps:
            return
        try:
            info = parse_sps(nal)
        except H264Error as exc:
            self._lost(picture)
            raise H264Error("unsupported", f"SPS: {exc.detail}") from None
        self._sps, self._info = nal, info
        self._update()

    def _set_pps(self, nal: bytes) -> None:
        if nal != self._pps:
            self._pps = nal
            self._update()

    def _update(self) -> None:
        if self._sps is None or self._pps is None or self._info is None:
            return
        if self._params is not None:
            self._keyed = False  # new parameters: the decoder starts over at a key frame
            self._since = "since the parameters changed"
        self._params = Parameters(self._sps, self._pps, self._info)
