"""A byte stream of concatenated JPEGs cut into frames (``ffmpeg -c copy -f mjpeg -``,
``rpicam-vid --codec mjpeg -o -``): what a ``pipe:`` source reads. Pure bytes in, bytes out."""

from __future__ import annotations

from typing import Final

from .jpeg import IMAGE_MARKER, MAX_FRAME_BYTES, SOI, IncompleteHeader, InvalidFrame, walk_header

# Splitter states.
_SEEK: Final = 0  # looking for the start of a frame
_HEADER: Final = 1  # walking a JPEG header
_BODY: Final = 2  # in the scan data


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
                    self._pos = walk_header(buf, self._pos, len(buf)).scan
                except IncompleteHeader as e:
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
            found = IMAGE_MARKER.search(buf, self._pos)
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
