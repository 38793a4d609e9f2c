"""JPEG passthrough: check a camera's own JPEG bytes without decoding them.

USB cameras (MJPEG), ``rpicam-vid --codec mjpeg`` and other MJPEG servers already hand us JPEGs;
decoding and re-encoding them costs most of a Raspberry Pi core at 30 fps for nothing. Publishing
the camera's bytes as they are is nearly free, but then nothing between the camera and the viewers
has looked at them, and one truncated or glued frame can leave a browser's ``<img>`` frozen. So
every passed-through frame goes through `check_frame` before anyone sees it. The splitters that
cut frames out of byte streams (``jpeg_stream.py``, ``multipart.py``) walk headers with the same
`walk_header`.

Nothing here decodes, and nothing loops over image data in Python: the checks walk the few header
segments (markers and their lengths, up to the start of scan, usually a few hundred bytes) and
search the entropy-coded data only with a regex or ``bytes.find``, which run in C. A check costs
tens of microseconds, so it can run on every frame.

Where a frame ends: at the first FF D9 after the start of scan. Inside entropy-coded data a 0xFF
byte is always followed by 0x00 (byte stuffing) or a restart marker, so FF D9 there is the end of
image. Before the start of scan it is not: an EXIF thumbnail is a whole JPEG, FF D9 included,
inside an APP1 segment. That is why the header is skipped segment by segment using the lengths,
never searched. (A frame with several scans has segments between them, where FF D9 is possible
in principle, e.g. in a comment; cameras send single-scan baseline frames.)

UVC cameras send "AVI1" frames without Huffman tables: the old Motion-JPEG convention is that the
decoder knows the standard ones. Firefox and many other decoders reject those frames, so
`check_frame` inserts the standard tables of ITU-T T.81 Annex K.3 (the bytes stay the camera's).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final, Literal, NamedTuple, get_args

Reason = Literal[
    "too_small",  # shorter than min_size: a fragment, not a frame
    "too_large",  # longer than the size limit
    "no_soi",  # does not start with FF D8
    "no_eoi",  # does not end with FF D9: cut in the scan, or junk after the image
    "truncated",  # ends inside the header (a segment runs past the end)
    "corrupt",  # the header or the scan's framing makes no sense (bad length, stray marker, glued frames)
    "no_sof",  # no frame header (so no size) before the scan
    "no_sos",  # the image ends before any scan
    "size_mismatch",  # the frame's size is not the one the camera was set to
]
#: Every `InvalidFrame.reason`, e.g. to pre-create a Prometheus label set.
REASONS: Final[frozenset[str]] = frozenset(get_args(Reason))

#: A frame shorter than this is a fragment. A hand-made 1x1 grey JPEG (quantisation table, frame
#: header, minimal Huffman tables, scan) is about this size; real camera frames, even tiny ones
#: without Huffman tables, are far larger.
MIN_FRAME_BYTES: Final = 125
#: Upper bound for one frame, far above any camera's JPEG (4K at quality 100 is a few MB), so that a
#: stream without frame ends cannot make us buffer without limit.
MAX_FRAME_BYTES: Final = 8 * 1024 * 1024

SOI: Final = b"\xff\xd8"
EOI: Final = b"\xff\xd9"
_SOS: Final = 0xDA
_DHT: Final = 0xC4
# SOF0..SOF15 share C0..CF with three markers that are not frame headers: DHT, JPG and DAC.
_SOF_MARKERS: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# SOF9 and up are arithmetic-coded: they use no Huffman tables, so none are inserted there.
_HUFFMAN_SOF: Final = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7})
# Markers without a length field: TEM and the restart markers.
_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD8)})
# Any marker may be preceded by fill bytes (0xFF); a regex finds the end of a run in C, so a hostile
# run of millions of 0xFF costs no Python loop.
_NOT_FILL: Final = re.compile(rb"[^\xff]")
# The start or the end of an image, neither of which can occur inside scan data. One regex pass
# finds the first of either several times faster than bytes.find does for one of them.
IMAGE_MARKER: Final = re.compile(rb"\xff[\xd8\xd9]")


class InvalidFrame(Exception):
    """A frame that must not be published. ``reason`` is one of `REASONS` (a metric label);
    ``detail`` says where, for the log."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: Reason = reason
        self.detail = detail


class IncompleteHeader(InvalidFrame):
    """The header runs past the data seen so far. The stream splitters wait for more data and
    resume the walk at ``resume`` instead of starting over, so a header arriving byte by byte is
    still walked once; for a whole frame it simply means "truncated"."""

    def __init__(self, resume: int, detail: str) -> None:
        super().__init__("truncated", detail)
        self.resume = resume


class _Header(NamedTuple):
    sos: int  # offset of the SOS marker (of its fill bytes, if any): where tables can be inserted
    scan: int  # offset of the entropy-coded data, just after the SOS segment
    sof: int  # offset of the first SOF marker's code byte, or -1
    has_dht: bool  # a DHT segment comes before the SOS


def walk_header(buf: bytes | bytearray, pos: int, end: int) -> _Header:
    """Walks the marker segments of ``buf[pos:end]`` (``pos`` just after SOI) up to the SOS.

    Raises `IncompleteHeader` when the data ends first, `InvalidFrame` when what is there is not a header.
    """
    sof = -1
    has_dht = False
    while True:
        if pos + 1 >= end:
            raise IncompleteHeader(pos, f"header ends at offset {end}")
        if buf[pos] != 0xFF:
            raise InvalidFrame("corrupt", f"0x{buf[pos]:02x} at offset {pos} where a marker should be")
        m = pos + 1
        if buf[m] == 0xFF:
            found = _NOT_FILL.search(buf, m, end)
            if found is None:
                # Resume on the last fill byte: the run before it need not be read again.
                raise IncompleteHeader(end - 1, f"fill bytes up to offset {end}")
            m = found.start()
        marker = buf[m]
        if marker in _STANDALONE:
            pos = m + 1
            continue
        if marker == 0xD9:
            raise InvalidFrame("no_sos", f"end of image at offset {m - 1} before any scan")
        if marker in (0x00, 0xD8):
            raise InvalidFrame("corrupt", f"marker FF{marker:02X} at offset {m - 1} inside the header")
        if m + 3 > end:
            raise IncompleteHeader(m - 1, f"marker FF{marker:02X} at offset {m - 1} without its length")
        length = buf[m + 1] << 8 | buf[m + 2]
        if length < 2:
            raise InvalidFrame("corrupt", f"marker FF{marker:02X} at offset {m - 1} has length {length}")
        nxt = m + 1 + length
        if nxt > end:
            raise IncompleteHeader(m - 1, f"segment FF{marker:02X} at offset {m - 1} runs to {nxt}, past {end}")
        if marker == _SOS:
            return _Header(pos, nxt, sof, has_dht)
        if marker == _DHT:
            has_dht = True
        elif sof < 0 and marker in _SOF_MARKERS:
            if length < 8:  # precision, height, width, component count
                raise InvalidFrame("corrupt", f"frame header at offset {m - 1} has length {length}")
            sof = m
        pos = nxt


def _header(jpeg: bytes | bytearray) -> _Header:
    if not jpeg.startswith(SOI):
        raise InvalidFrame("no_soi", f"starts with {bytes(jpeg[:2]).hex()}")
    try:
        return walk_header(jpeg, 2, len(jpeg))
    except IncompleteHeader as e:
        raise InvalidFrame("truncated", e.detail) from None


def _dimensions(jpeg: bytes | bytearray, sof: int) -> tuple[int, int]:
    return jpeg[sof + 6] << 8 | jpeg[sof + 7], jpeg[sof + 4] << 8 | jpeg[sof + 5]


def sof_dimensions(jpeg: bytes) -> tuple[int, int] | None:
    """(width, height) from the first frame header, or None when the header up to the start of
    scan is not well formed (no SOI, truncated, corrupt) or has no frame header."""
    try:
        sof = _header(jpeg).sof
    except InvalidFrame:
        return None
    return None if sof < 0 else _dimensions(jpeg, sof)


def has_huffman_tables(jpeg: bytes) -> bool:
    """Whether a DHT segment comes before the start of scan (False too when the header is not
    well formed: `check_frame` says why)."""
    try:
        return _header(jpeg).has_dht
    except InvalidFrame:
        return False


# ITU-T T.81 Annex K.3, Tables K.3 to K.6. A DHT table is BITS (how many codes have each length,
# 1 to 16 bits) followed by HUFFVAL (the symbols in code order).
_DC_SYMBOLS: Final = tuple(range(12))  # DC symbols: the bit size of the difference, 0..11
_LUMA_DC_BITS: Final = (0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0)
_CHROMA_DC_BITS: Final = (0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0)
# AC symbols are RRRRSSSS bytes (a run of zeros, then the bit size of the next coefficient): end of
# block 0x00, sixteen zeros 0xF0, and runs 0..15 with sizes 1..10: 162 symbols.
_AC_SYMBOLS: Final = (0x00, 0xF0, *(run << 4 | size for run in range(16) for size in range(1, 11)))
# Tables K.5 and K.6: the symbols with codes of 1 to 15 bits, by length; every other AC symbol has
# a 16-bit code, given in increasing symbol order.
_LUMA_AC_SHORT: Final = (
    (),
    (0x01, 0x02),
    (0x03,),
    (0x00, 0x04, 0x11),
    (0x05, 0x12, 0x21),
    (0x31, 0x41),
    (0x06, 0x13, 0x51, 0x61),
    (0x07, 0x22, 0x71),
    (0x14, 0x32, 0x81, 0x91, 0xA1),
    (0x08, 0x23, 0x42, 0xB1, 0xC1),
    (0x15, 0x52, 0xD1, 0xF0),
    (0x24, 0x33, 0x62, 0x72),
    (),
    (),
    (0x82,),
)
_CHROMA_AC_SHORT: Final = (
    (),
    (0x00, 0x01),
    (0x02,),
    (0x03, 0x11),
    (0x04, 0x05, 0x21, 0x31),
    (0x06, 0x12, 0x41, 0x51),
    (0x07, 0x61, 0x71),
    (0x13, 0x22, 0x32, 0x81),
    (0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1),
    (0x09, 0x23, 0x33, 0x52, 0xF0),
    (0x15, 0x62, 0x72, 0xD1),
    (0x0A, 0x16, 0x24, 0x34),
    (),
    (0xE1,),
    (0x25, 0xF1),
)


def _ac_table(short: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    listed = [symbol for group in short for symbol in group]
    rest = sorted(set(_AC_SYMBOLS) - set(listed))
    return (*(len(group) for group in short), len(rest)), (*listed, *rest)


def _dht_segment(tables: Sequence[tuple[int, tuple[int, ...], tuple[int, ...]]]) -> bytes:
    body = b"".join(bytes([class_id, *bits, *symbols]) for class_id, bits, symbols in tables)
    return b"\xff\xc4" + (len(body) + 2).to_bytes(2, "big") + body


#: One DHT segment with the four standard tables: class 0 (DC) / 1 (AC) in the high nibble, table 0
#: (luminance) / 1 (chrominance) in the low one, as the AVI1 convention assigns them.
STANDARD_DHT: Final = _dht_segment(
    [
        (0x00, _LUMA_DC_BITS, _DC_SYMBOLS),
        (0x10, *_ac_table(_LUMA_AC_SHORT)),
        (0x01, _CHROMA_DC_BITS, _DC_SYMBOLS),
        (0x11, *_ac_table(_CHROMA_AC_SHORT)),
    ]
)


def insert_standard_huffman_tables(jpeg: bytes) -> bytes:
    """The frame with `STANDARD_DHT` inserted just before its SOS marker; the same object when it
    already has Huffman tables (its own tables must win, and a second call must not add more).

    Raises `InvalidFrame` when the header cannot be walked up to the SOS.
    """
    header = _header(jpeg)
    if header.has_dht:
        return jpeg
    return jpeg[: header.sos] + STANDARD_DHT + jpeg[header.sos :]


def check_frame(
    jpeg: bytes,
    expect: tuple[int, int] | None = None,
    min_size: int = MIN_FRAME_BYTES,
    *,
    max_size: int = MAX_FRAME_BYTES,
) -> bytes:
    """The frame to publish, or `InvalidFrame` saying why not.

    Returns ``jpeg`` itself when it is fine as it is; a new bytes object when it had zero padding
    after its end of image (some UVC cameras fill the rest of their buffer with zeros; trimmed) or
    no Huffman tables (the standard ones inserted). ``expect`` is (width, height).

    Cost: the header walk, one regex search through the scan data (in C) and, only for the two
    repairs above, one copy.
    """
    size = len(jpeg)
    if size > max_size:
        raise InvalidFrame("too_large", f"{size} bytes, more than {max_size}")
    if size < min_size:
        raise InvalidFrame("too_small", f"{size} bytes, less than {min_size}")
    if not jpeg.startswith(SOI):
        raise InvalidFrame("no_soi", f"starts with {jpeg[:2].hex()}")
    frame = jpeg
    if not jpeg.endswith(EOI) and jpeg.endswith(b"\x00"):
        trimmed = jpeg.rstrip(b"\x00")
        if trimmed.endswith(EOI):
            if len(trimmed) < min_size:
                raise InvalidFrame("too_small", f"{len(trimmed)} bytes before the zero padding")
            frame = trimmed
    header = _header(frame)
    if header.sof < 0:
        raise InvalidFrame("no_sof", f"no frame header before the scan at offset {header.sos}")
    if not frame.endswith(EOI):
        raise InvalidFrame("no_eoi", f"ends with {frame[-2:].hex()}")
    last = len(frame) - 2
    if header.scan > last:
        raise InvalidFrame("truncated", f"the scan header runs to {header.scan}, into the end of image at {last}")
    # The first start or end of image after the start of scan must be the final end of image:
    # otherwise this is a cut frame with another one (or its end) glued on, which a tail check
    # alone would let through.
    found = IMAGE_MARKER.search(frame, header.scan)
    if found is not None and found.start() != last:
        what = "start" if frame[found.start() + 1] == 0xD8 else "end"
        raise InvalidFrame("corrupt", f"{what} of image at offset {found.start()} inside the scan")
    dims = _dimensions(frame, header.sof)
    if 0 in dims:
        # Height 0 means "given later in a DNL segment", which browsers' decoders do not support.
        raise InvalidFrame("corrupt", f"frame header gives {dims[0]}x{dims[1]}")
    if expect is not None and dims != expect:
        raise InvalidFrame("size_mismatch", f"{dims[0]}x{dims[1]}, expected {expect[0]}x{expect[1]}")
    if not header.has_dht and frame[header.sof] in _HUFFMAN_SOF:
        return frame[: header.sos] + STANDARD_DHT + frame[header.sos :]
    return frame
