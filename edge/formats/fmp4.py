"""Fragmented MP4 (ISO/IEC 14496-12 and -15) for Media Source Extensions: an initialisation
segment (``ftyp`` + ``moov``) per parameter set, then one ``moof`` + ``mdat`` fragment per access
unit. What a browser's ``SourceBuffer`` needs to play an H.264 camera without re-encoding.

The boxes are the few MSE requires, written with `struct`: one video track (ID 1), an ``avcC``
holding the camera's SPS and PPS, empty sample tables, and fragments of one sample each whose
timing (`TIMESCALE` ticks) and key-frame flag are explicit, so no defaults are needed in ``trex``.
Pure bytes in, bytes out.
"""

from __future__ import annotations

import struct
from typing import Final

from .h264 import H264Error, parse_sps

#: Ticks per second of the track's timeline (the MPEG-TS clock: whole ticks for 25, 30 and 60 fps).
TIMESCALE: Final = 90000
_MOVIE_TIMESCALE: Final = 1000
_TRACK_ID: Final = 1
# Profiles whose avcC carries chroma format and bit depths (ISO/IEC 14496-15 5.3.3.1.2).
_AVCC_HIGH_PROFILES: Final = frozenset({100, 110, 122, 144})
_UNITY_MATRIX: Final = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
_TRUN_FLAGS: Final = 0x000001 | 0x000100 | 0x000200 | 0x000400  # data offset; duration, size, flags per sample
_TFHD_DEFAULT_BASE_IS_MOOF: Final = 0x020000
# Sample flags (14496-12 8.8.3.1): sample_depends_on 2 (an I picture) for a key frame; depends_on 1
# and sample_is_non_sync_sample for the others.
_KEY_FLAGS: Final = 0x02000000
_DELTA_FLAGS: Final = 0x01010000


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", version << 24 | flags), *payload)


def _avcc(sps: bytes, pps: bytes) -> bytes:
    """The AVCDecoderConfigurationRecord (14496-15 5.3.3.1) for one SPS and one PPS."""
    if len(sps) < 4 or not pps:
        raise ValueError(f"an SPS of {len(sps)} bytes and a PPS of {len(pps)} cannot make an avcC")
    record = struct.pack(">5B", 1, sps[1], sps[2], sps[3], 0xFC | 3)  # NAL lengths in 4 bytes
    record += struct.pack(">BH", 0xE0 | 1, len(sps)) + sps + struct.pack(">BH", 1, len(pps)) + pps
    if sps[1] in _AVCC_HIGH_PROFILES:
        try:
            info = parse_sps(sps)
        except H264Error as exc:
            raise ValueError(f"an SPS that cannot be read cannot make an avcC: {exc}") from None
        record += struct.pack(
            ">4B",
            0xFC | info.chroma_format_idc,
            0xF8 | (info.bit_depth_luma - 8),
            0xF8 | (info.bit_depth_chroma - 8),
            0,
        )  # no SPS extensions
    return _box(b"avcC", record)


def init_segment(params_sps: bytes, params_pps: bytes, width: int, height: int) -> bytes:
    """``ftyp`` + ``moov`` for one H.264 track of ``width`` x ``height`` whose SPS and PPS (NAL
    units without start codes) are given: what a ``SourceBuffer`` takes before the first fragment,
    and again whenever the parameters change."""
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isom", b"iso6", b"avc1", b"mp41")
    mvhd = _full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, _MOVIE_TIMESCALE, 0),  # creation, modification, timescale, duration
        struct.pack(">IH10x", 0x00010000, 0x0100),  # rate 1.0, volume 1.0, reserved
        _UNITY_MATRIX,
        bytes(24),  # pre_defined
        struct.pack(">I", _TRACK_ID + 1),  # next_track_ID
    )
    tkhd = _full_box(
        b"tkhd",
        0,
        3,  # enabled, in the movie
        struct.pack(">IIIII", 0, 0, _TRACK_ID, 0, 0),  # creation, modification, track, reserved, duration
        struct.pack(">8xhhH2x", 0, 0, 0),  # layer, alternate_group, volume 0 (video)
        _UNITY_MATRIX,
        struct.pack(">II", width << 16, height << 16),  # 16.16 fixed point
    )
    mdhd = _full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, TIMESCALE, 0, 0x55C4, 0))  # language "und"
    hdlr = _full_box(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, b"vide"), b"VideoHandler\x00")
    vmhd = _full_box(b"vmhd", 0, 1, bytes(8))  # graphicsmode copy, opcolor 0
    dinf = _box(b"dinf", _full_box(b"dref", 0, 0, struct.pack(">I", 1), _full_box(b"url ", 0, 1)))  # data here
    avc1 = _box(
        b"avc1",
        struct.pack(">6xH", 1),  # reserved, data_reference_index
        struct.pack(">16xHH", width, height),  # pre_defined and reserved, then the size
        struct.pack(">IIIH", 0x00480000, 0x00480000, 0, 1),  # 72 dpi both ways, reserved, frame_count
        bytes(32),  # compressorname
        struct.pack(">Hh", 0x0018, -1),  # depth: colour without alpha; pre_defined
        _avcc(params_sps, params_pps),
    )
    stbl = _box(
        b"stbl",
        _full_box(b"stsd", 0, 0, struct.pack(">I", 1), avc1),
        _full_box(b"stts", 0, 0, struct.pack(">I", 0)),
        _full_box(b"stsc", 0, 0, struct.pack(">I", 0)),
        _full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
        _full_box(b"stco", 0, 0, struct.pack(">I", 0)),
    )
    trak = _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, _box(b"minf", vmhd, dinf, stbl)))
    trex = _full_box(b"trex", 0, 0, struct.pack(">IIIII", _TRACK_ID, 1, 0, 0, 0))  # sample description 1
    return ftyp + _box(b"moov", mvhd, trak, _box(b"mvex", trex))


def sample(au_nals: list[bytes]) -> bytes:
    """An MP4 sample of NAL units (without start codes): each after its length in 4 bytes."""
    return b"".join(struct.pack(">I", len(nal)) + nal for nal in au_nals)


def fragment(sequence: int, decode_time: int, duration: int, data: bytes, key: bool) -> bytes:
    """``moof`` + ``mdat`` holding one sample, `data` (see `sample`), that starts ``decode_time``
    and lasts ``duration`` `TIMESCALE` ticks; ``sequence`` numbers the fragments (from 1)."""
    mfhd = _full_box(b"mfhd", 0, 0, struct.pack(">I", sequence))
    tfhd = _full_box(b"tfhd", 0, _TFHD_DEFAULT_BASE_IS_MOOF, struct.pack(">I", _TRACK_ID))
    tfdt = _full_box(b"tfdt", 1, 0, struct.pack(">Q", decode_time))
    flags = _KEY_FLAGS if key else _DELTA_FLAGS

    def moof(data_offset: int) -> bytes:
        trun = _full_box(b"trun", 0, _TRUN_FLAGS, struct.pack(">IiIII", 1, data_offset, duration, len(data), flags))
        return _box(b"moof", mfhd, _box(b"traf", tfhd, tfdt, trun))

    # The data offset counts from the moof's first byte to the sample's (the mdat's payload); the
    # moof's size does not depend on the value.
    size = len(moof(0))
    return moof(size + 8) + _box(b"mdat", data)
