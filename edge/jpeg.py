"""JPEG passthrough: check a camera's own JPEG bytes and cut them out of byte streams, without decoding.

USB cameras (MJPEG), ``rpicam-vid --codec mjpeg`` and other MJPEG servers already hand us JPEGs;
decoding and re-encoding them costs most of a Raspberry Pi core at 30 fps for nothing. Publishing
the camera's bytes as they are is nearly free, but then nothing between the camera and the viewers
has looked at them, and one truncated or glued frame can leave a browser's ``<img>`` frozen. So
every passed-through frame goes through `check_frame` before anyone sees it.

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
#: Upper bound for the headers of one multipart part (they are a few short lines).
MAX_PART_HEADER_BYTES: Final = 8 * 1024

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
_IMAGE_MARKER: Final = re.compile(rb"\xff[\xd8\xd9]")


class InvalidFrame(Exception):
    """A frame that must not be published. ``reason`` is one of `REASONS` (a metric label);
    ``detail`` says where, for the log."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: Reason = reason
        self.detail = detail


class _Incomplete(InvalidFrame):
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


def _walk(buf: bytes | bytearray, pos: int, end: int) -> _Header:
    """Walks the marker segments of ``buf[pos:end]`` (``pos`` just after SOI) up to the SOS.

    Raises `_Incomplete` when the data ends first, `InvalidFrame` when what is there is not a header.
    """
    sof = -1
    has_dht = False
    while True:
        if pos + 1 >= end:
            raise _Incomplete(pos, f"header ends at offset {end}")
        if buf[pos] != 0xFF:
            raise InvalidFrame("corrupt", f"0x{buf[pos]:02x} at offset {pos} where a marker should be")
        m = pos + 1
        if buf[m] == 0xFF:
            found = _NOT_FILL.search(buf, m, end)
            if found is None:
                # Resume on the last fill byte: the run before it need not be read again.
                raise _Incomplete(end - 1, f"fill bytes up to offset {end}")
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
            raise _Incomplete(m - 1, f"marker FF{marker:02X} at offset {m - 1} without its length")
        length = buf[m + 1] << 8 | buf[m + 2]
        if length < 2:
            raise InvalidFrame("corrupt", f"marker FF{marker:02X} at offset {m - 1} has length {length}")
        nxt = m + 1 + length
        if nxt > end:
            raise _Incomplete(m - 1, f"segment FF{marker:02X} at offset {m - 1} runs to {nxt}, past {end}")
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
        return _walk(jpeg, 2, len(jpeg))
    except _Incomplete as e:
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
    found = _IMAGE_MARKER.search(frame, header.scan)
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


# Splitter states.
_SEEK: Final = 0  # looking for the start of a frame (JPEG stream) or a boundary (multipart)
_HEADER: Final = 1  # walking a JPEG header (JPEG stream) or reading part headers (multipart)
_BODY: Final = 2  # in the scan data (JPEG stream) or in a part's payload (multipart)


class JpegStreamSplitter:
    """Cuts a byte stream of concatenated JPEGs (``ffmpeg -c copy -f mjpeg -``, ``rpicam-vid
    --codec mjpeg -o -``) into frames.

    A frame is SOI, the header segments skipped by their lengths, then the scan up to the first
    FF D9. Every byte is looked at about once however the stream is chunked: the header walk and
    the search for the end resume where they stopped. Memory stays below ``max_frame`` plus one
    chunk: a frame that grows past it is discarded and the splitter resyncs on the next SOI.

    Counters: ``frames`` returned; ``discarded`` frames started but thrown away (too large, broken
    header, or cut short by the start of another image); ``skipped_bytes`` every byte not returned
    in a frame (garbage between frames, padding, discarded frames).
    """

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        if max_frame < 4:
            raise ValueError(f"max_frame must be at least 4, got {max_frame}")
        self.max_frame = max_frame
        self.frames = 0
        self.discarded = 0
        self.skipped_bytes = 0
        self._buf = bytearray()
        self._state = _SEEK
        self._pos = 0  # _HEADER: the next marker to read; _BODY: where to search for the end

    @property
    def buffered(self) -> int:
        """Bytes held back, waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Adds ``data``; returns the frames it completed, in order."""
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        while True:
            if self._state == _SEEK:
                start = buf.find(SOI)
                if start < 0:
                    # Keep a trailing FF: it may be the first half of the next SOI.
                    self._drop(len(buf) - 1 if buf.endswith(b"\xff") else len(buf))
                    return frames
                self._drop(start)
                self._state, self._pos = _HEADER, 2
            if self._state == _HEADER:
                try:
                    self._pos = _walk(buf, self._pos, len(buf)).scan
                except _Incomplete as e:
                    self._pos = e.resume
                    if len(buf) > self.max_frame:
                        self._discard()
                    return frames
                except InvalidFrame:
                    # Not a frame after all (FF D8 in garbage, or a broken header): resync on the
                    # next SOI, which may lie inside what we took for this frame.
                    self.discarded += 1
                    self._drop(2)
                    self._state = _SEEK
                    continue
                self._state = _BODY
            found = _IMAGE_MARKER.search(buf, self._pos)
            if found is None:
                if len(buf) > self.max_frame:
                    self._discard()
                else:
                    self._pos = len(buf) - 1  # the last byte may be the FF of FF D9
                return frames
            if buf[found.start() + 1] == 0xD8:
                # An image starts inside this one's scan: this one lost its end (a camera or pipe
                # hiccup). Publishing it glued to the next would show garbage.
                self.discarded += 1
                self._drop(found.start())
                self._state, self._pos = _HEADER, 2
                continue
            size = found.end()
            if size > self.max_frame:
                self.discarded += 1
                self._drop(size)
            else:
                frames.append(bytes(buf[:size]))
                del buf[:size]
                self.frames += 1
            self._state = _SEEK

    def _drop(self, n: int) -> None:
        del self._buf[:n]
        self.skipped_bytes += n

    def _discard(self) -> None:
        """Throws away the frame being collected (too large) and resyncs on the next SOI."""
        self.discarded += 1
        buf = self._buf
        self._drop(len(buf) - 1 if buf.endswith(b"\xff") else len(buf))
        self._state = _SEEK


# What may follow the boundary token on a delimiter line: the line end, "--" (the close
# delimiter) or transport padding. Anything else means the token was part of a longer word.
_AFTER_BOUNDARY: Final = frozenset(b"\r\n\t -")
# RFC 2046 boundary characters; a boundary learned from the stream must look like one, so a "--"
# line inside image data is not taken for it.
_BOUNDARY_TOKEN: Final = re.compile(rb"[0-9A-Za-z'()+_,\-./:=? ]{0,199}[0-9A-Za-z'()+_,\-./:=?]")
_MAX_BOUNDARY_LINE: Final = 256
# Where a boundary can be learned from: "--" at the start of a line (the buffer's start counts as one).
_DASHES_AT_LINE_START: Final = re.compile(rb"(?m)^--")


class MultipartSplitter:
    """Cuts a ``multipart/x-mixed-replace`` MJPEG body (already de-chunked) into its payloads: what
    mjpg-streamer, IP cameras and edge itself (CONTRACT §4) serve.

    A part with ``Content-Length`` gives exactly that many bytes. A part without it ends at its
    JPEG's end of image (found as in `JpegStreamSplitter`) or at the next boundary, whichever comes
    first: using the end of image returns each frame as soon as it is complete, rather than one
    frame late from servers that send the boundary before each frame. Payloads are returned as the
    stream delimits them; whether they are good frames is for `check_frame` to say.

    ``boundary`` may be given with or without its leading ``--``, or learned from the first
    ``--token`` line. Delimiter lines may come with or without a line break before them, and lines
    may end with CRLF or LF; other part headers (X-Timestamp...) are ignored.

    Memory stays below ``max(max_part, max_header)`` plus one chunk, whatever the input: a part
    larger than ``max_part`` (or announcing it), or headers longer than ``max_header``, are discarded
    and the splitter resyncs on the next boundary.

    Counters: ``frames`` payloads returned; ``discarded`` parts thrown away; ``skipped_bytes``
    garbage skipped while looking for a boundary (line breaks around delimiters are not garbage).
    """

    def __init__(
        self,
        boundary: bytes | None = None,
        max_part: int = MAX_FRAME_BYTES,
        max_header: int = MAX_PART_HEADER_BYTES,
    ) -> None:
        needle = None
        if boundary is not None:
            # Searched for as is: the delimiter line that an RFC-minded server writes for a boundary
            # given with "--" ("----token") contains it too.
            needle = b"--" + (boundary[2:] if boundary.startswith(b"--") and len(boundary) > 2 else boundary)
            if needle == b"--" or b"\n" in needle or b"\r" in needle:
                raise ValueError(f"unusable multipart boundary {boundary!r}")
        if max_part < 1 or max_header < 1:
            raise ValueError("max_part and max_header must be positive")
        self.max_part = max_part
        self.max_header = max_header
        self.frames = 0
        self.discarded = 0
        self.skipped_bytes = 0
        self._needle = needle
        self._buf = bytearray()
        self._state = _SEEK
        self._pos = 0  # _SEEK: where to search for the boundary; _HEADER: the next header line
        self._length: int | None = None  # the part's Content-Length
        self._jpeg: bool | None = None  # part without length: does it start with SOI (None: not known yet)
        self._hdr = 2  # part without length: next JPEG marker to read
        self._scan = -1  # part without length: where to search for the end of image, once the header is walked
        self._bpos = 0  # part without length: where to search for the next boundary

    @property
    def boundary(self) -> bytes | None:
        """The boundary token (without ``--``), given or learned; None until learned."""
        return None if self._needle is None else self._needle[2:]

    @property
    def buffered(self) -> int:
        """Bytes held back, waiting for the rest of a part."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Adds ``data``; returns the payloads it completed, in order."""
        self._buf += data
        payloads: list[bytes] = []
        while True:
            if self._state == _SEEK:
                progress = self._seek() if self._needle is not None else self._learn()
            elif self._state == _HEADER:
                progress = self._headers()
            elif self._length is not None:
                progress = self._sized_body(payloads)
            else:
                progress = self._open_body(payloads)
            if not progress:
                return payloads

    def _skip(self, n: int) -> None:
        """Drops ``n`` bytes before a delimiter, counting them unless they are just line breaks."""
        if n and self._buf[:n].strip(b"\r\n"):
            self.skipped_bytes += n
        del self._buf[:n]

    def _line_end(self, start: int, line: int) -> int | None:
        """Where the delimiter line that begins at ``line`` ends (its LF): ``None`` when it is not
        all here yet (what precedes it is dropped: wait for more), -1 when it is too long to be one."""
        buf = self._buf
        eol = buf.find(b"\n", start, start + _MAX_BOUNDARY_LINE)
        if eol >= 0:
            return eol
        if len(buf) - start < _MAX_BOUNDARY_LINE:
            self._skip(line)
            self._pos = 0
            return None
        return -1

    def _take_line(self, line: int, eol: int) -> None:
        """Drop everything up to and including the delimiter line at ``line``..``eol``."""
        self._skip(line)
        del self._buf[: eol + 1 - line]
        self._pos = 0

    def _seek(self) -> bool:
        buf = self._buf
        needle = self._needle
        assert needle is not None
        while True:
            i = buf.find(needle, self._pos)
            if i < 0:
                # Keep what could be the beginning of a delimiter cut by the chunking.
                self._skip(max(0, len(buf) - len(needle) + 1))
                self._pos = 0
                return False
            after = i + len(needle)
            if after >= len(buf):
                self._skip(i)
                self._pos = 0
                return False
            if buf[after] not in _AFTER_BOUNDARY:
                self._pos = i + 1
                continue
            eol = self._line_end(after, i)
            if eol is None:
                return False
            if eol < 0:
                self._pos = after  # an endless "delimiter line": junk
                continue
            close = buf.startswith(b"--", after)
            self._take_line(i, eol)
            if not close:  # after the close delimiter only an epilogue follows: keep seeking
                self._state = _HEADER
                self._length = None
            return True

    def _learn(self) -> bool:
        buf = self._buf
        while True:
            found = _DASHES_AT_LINE_START.search(buf, self._pos)
            if found is None:
                # Keep a line start that may be followed by "--" in the next chunk.
                keep = 2 if buf.endswith(b"\n-") else 1 if buf.endswith(b"\n") else 0
                self._skip(len(buf) - keep)
                self._pos = 0
                return False
            i = found.start()
            eol = self._line_end(i, i)
            if eol is None:
                return False
            if eol < 0:
                self._pos = i + 2
                continue
            token = bytes(buf[i + 2 : eol]).rstrip(b"\r\t ")
            if _BOUNDARY_TOKEN.fullmatch(token) is None:
                self._pos = i + 2
                continue
            self._needle = b"--" + token
            self._take_line(i, eol)
            self._state = _HEADER
            self._length = None
            return True

    def _headers(self) -> bool:
        buf = self._buf
        if self._pos == 0:
            if len(buf) < 2:
                return False
            if buf.startswith(SOI):
                self._start_body()  # a part without headers (or their blank line)
                return True
        while True:
            eol = buf.find(b"\n", self._pos)
            if eol >= self.max_header or (eol < 0 and len(buf) > self.max_header):
                # Headers that never end: give up on this part; the boundary search trims the buffer.
                self.discarded += 1
                self._state, self._pos = _SEEK, 0
                return True
            if eol < 0:
                return False
            line = bytes(buf[self._pos : eol]).strip()
            self._pos = eol + 1
            if not line:
                del buf[: self._pos]
                self._start_body()
                return True
            name, colon, value = line.partition(b":")
            if colon and name.strip().lower() == b"content-length":
                value = value.strip()
                self._length = int(value) if value.isdigit() else None

    def _start_body(self) -> None:
        self._state = _BODY
        self._pos = 0
        self._jpeg = None
        self._hdr = 2
        self._scan = -1
        self._bpos = 0

    def _emit(self, payloads: list[bytes], size: int, consumed: int) -> None:
        if size:
            payloads.append(bytes(self._buf[:size]))
            self.frames += 1
        del self._buf[:consumed]
        self._state, self._pos = _SEEK, 0

    def _sized_body(self, payloads: list[bytes]) -> bool:
        length = self._length
        assert length is not None
        if length > self.max_part:
            self.discarded += 1
            self._state, self._pos = _SEEK, 0
            return True
        if len(self._buf) < length:
            return False
        self._emit(payloads, length, length)
        return True

    def _open_body(self, payloads: list[bytes]) -> bool:
        buf = self._buf
        needle = self._needle
        assert needle is not None
        # Where the part ends at the latest: the next delimiter.
        cut = -1
        limit = len(buf)
        while True:
            i = buf.find(needle, self._bpos)
            if i < 0:
                self._bpos = max(self._bpos, len(buf) - len(needle) + 1)
                break
            after = i + len(needle)
            if after >= len(buf):  # perhaps a delimiter: search the JPEG only up to it for now
                self._bpos = limit = i
                break
            if buf[after] in _AFTER_BOUNDARY:
                cut = limit = i
                break
            self._bpos = i + 1
        if self._jpeg is None and (limit >= 2 or cut >= 0):
            self._jpeg = buf.startswith(SOI)
        if self._jpeg:
            if self._scan < 0:
                try:
                    self._scan = _walk(buf, self._hdr, limit).scan
                except _Incomplete as e:
                    self._hdr = e.resume
                except InvalidFrame:
                    self._jpeg = False
            if self._scan >= 0:
                found = _IMAGE_MARKER.search(buf, self._scan, limit)
                if found is None:
                    self._scan = max(self._scan, limit - 1)
                elif buf[found.start() + 1] == 0xD9:
                    self._emit(payloads, found.end(), found.end())
                    return True
                else:
                    # Another image starts inside the scan: this one lost its end. The part
                    # ends at the delimiter then, and check_frame will say it is broken.
                    self._jpeg = False
        if cut >= 0:
            # Not a complete JPEG, or not a JPEG: the part is what precedes the delimiter's line break.
            size = cut
            if size and buf[size - 1] == 0x0A:
                size -= 1
            if size and buf[size - 1] == 0x0D:
                size -= 1
            self._emit(payloads, size, cut)
            return True
        if len(buf) > self.max_part:
            self.discarded += 1
            self._state, self._pos = _SEEK, 0
            return True
        return False


_PARAMETER: Final = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_QUOTED_PAIR: Final = re.compile(r"\\(.)")


def boundary_from_content_type(value: str) -> bytes | None:
    """The ``boundary`` parameter of a Content-Type header value (quoted or not, as given: a
    leading ``--`` is kept), or None when there is none."""
    for match in _PARAMETER.finditer(value):
        if match.group(1).lower() != "boundary":
            continue
        raw = match.group(2).strip()
        if raw.startswith('"'):
            raw = _QUOTED_PAIR.sub(r"\1", raw[1:-1]) if len(raw) > 1 and raw.endswith('"') else raw[1:]
        if not raw:
            return None
        try:
            return raw.encode("ascii")
        except UnicodeEncodeError:
            return None
    return None
