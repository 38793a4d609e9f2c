"""FLV as PyAV's muxer writes it, cut into tags: each tag is one RTMP message (``rtmp.py``).

The muxer's output is edge's own, but the cut must not depend on how its writes fall: the header
and the first tags come in one write, later tags one per write; both are handled the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

HEADER_SIZE = 9  # "FLV", version, flags, header length; then PreviousTagSize0
TAG_HEADER = 11
SCRIPT = 18


class FlvError(ValueError):
    """Bytes that are not FLV."""


@dataclass(frozen=True, slots=True)
class Tag:
    type_id: int  # 8 audio, 9 video, 18 script data: the RTMP message type as well
    timestamp: int  # milliseconds
    payload: bytes


class FlvSplitter:
    def __init__(self) -> None:
        self._buffer = bytearray()
        self._header = True

    def feed(self, data: bytes) -> list[Tag]:
        self._buffer += data
        buf = self._buffer
        pos = 0
        tags: list[Tag] = []
        if self._header:
            if len(buf) < HEADER_SIZE + 4:
                return tags
            if buf[:3] != b"FLV":
                raise FlvError("not an FLV stream")
            pos = int.from_bytes(buf[5:9], "big") + 4
            self._header = False
        while len(buf) - pos >= TAG_HEADER:
            size = int.from_bytes(buf[pos + 1 : pos + 4], "big")
            end = pos + TAG_HEADER + size + 4  # the tag, then its PreviousTagSize
            if len(buf) < end:
                break
            stamp = int.from_bytes(buf[pos + 4 : pos + 7], "big") | buf[pos + 7] << 24
            tags.append(Tag(buf[pos] & 0x1F, stamp, bytes(buf[pos + TAG_HEADER : end - 4])))
            pos = end
        del buf[:pos]
        return tags
