"""RTMP as a publisher speaks it: the handshake, AMF0 commands, and the chunk stream both ways.

Pure functions over bytes; the socket is ``edge/publish/rtmp.py``'s. FFmpeg has an RTMP client,
but PyAV calls it with the interpreter lock held (``avio_open``, the handshake included): a server
that accepts and never answers would freeze every thread of edge, the capture threads and the
event loop too. So PyAV's FLV muxer makes the tags, and this module turns them into RTMP messages
(Adobe's RTMP 1.0 specification, sections 5 and 7; AMF0 from its own specification).

What comes from the server is untrusted: :class:`ChunkReader` bounds what it keeps (message size,
chunk size, the number of chunk streams) and raises :class:`RtmpError` for anything malformed.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

VERSION = 3
HANDSHAKE_SIZE = 1536
DEFAULT_CHUNK_SIZE = 128
OUT_CHUNK_SIZE = 4096  # ours, announced first: a 4 KiB chunk costs one header per 4 KiB of video
MAX_CHUNK_SIZE = 0x7FFFFFFF
MAX_MESSAGE = 1024 * 1024  # a server's command or control message; anything bigger is hostile
MAX_CHUNK_STREAMS = 64
MAX_DEPTH = 16  # nested AMF0 objects a server may send

# Message types (section 5.4 and 7.1).
SET_CHUNK_SIZE = 1
ABORT = 2
ACKNOWLEDGEMENT = 3
USER_CONTROL = 4
WINDOW_ACK_SIZE = 5
SET_PEER_BANDWIDTH = 6
AUDIO = 8
VIDEO = 9
DATA_AMF0 = 18
COMMAND_AMF0 = 20

# Chunk stream ids edge sends on (2 is the protocol's own control stream).
CONTROL_CSID = 2
COMMAND_CSID = 3
DATA_CSID = 5
VIDEO_CSID = 6

AmfValue: TypeAlias = "float | bool | str | None | dict[str, AmfValue] | list[AmfValue]"


class RtmpError(ValueError):
    """Bytes that are not RTMP, or that no server sends to a publisher."""


@dataclass(frozen=True, slots=True)
class Message:
    type_id: int
    stream_id: int
    timestamp: int
    payload: bytes


# -- handshake (section 5.2) --------------------------------------------------------------------


def handshake_c0c1(random: bytes) -> bytes:
    """C0 (the version) and C1 (time, zero, 1528 random bytes): the simple handshake, which every
    server accepts from a publisher."""
    if len(random) != HANDSHAKE_SIZE - 8:
        raise ValueError("C1 needs 1528 random bytes")
    return bytes([VERSION]) + struct.pack(">II", 0, 0) + random


def handshake_c2(s0s1s2: bytes) -> bytes:
    """C2 from the server's S0, S1 and S2: S1 echoed."""
    if len(s0s1s2) != 1 + 2 * HANDSHAKE_SIZE:
        raise RtmpError("handshake cut short")
    if s0s1s2[0] != VERSION:
        raise RtmpError(f"not an RTMP server (version byte {s0s1s2[0]})")
    return s0s1s2[1 : 1 + HANDSHAKE_SIZE]


# -- AMF0 ---------------------------------------------------------------------------------------


def amf_encode(*values: AmfValue) -> bytes:
    return b"".join(_encode(value) for value in values)


def _encode(value: AmfValue) -> bytes:
    if value is None:
        return b"\x05"
    if isinstance(value, bool):
        return b"\x01" + bytes([value])
    if isinstance(value, int | float):
        return b"\x00" + struct.pack(">d", float(value))
    if isinstance(value, str):
        data = value.encode()
        if len(data) > 0xFFFF:
            return b"\x0c" + struct.pack(">I", len(data)) + data
        return b"\x02" + struct.pack(">H", len(data)) + data
    if isinstance(value, dict):
        return b"\x03" + b"".join(_key(k) + _encode(v) for k, v in value.items()) + b"\x00\x00\x09"
    if isinstance(value, list):
        return b"\x0a" + struct.pack(">I", len(value)) + b"".join(_encode(v) for v in value)
    raise TypeError(f"AMF0 cannot encode {type(value).__name__}")


def _key(key: str) -> bytes:
    data = key.encode()
    return struct.pack(">H", len(data)) + data


def amf_decode(data: bytes) -> list[AmfValue]:
    """Every value in ``data``; raises :class:`RtmpError` on anything malformed."""
    values: list[AmfValue] = []
    pos = 0
    while pos < len(data):
        value, pos = _decode(data, pos, 0)
        values.append(value)
    return values


def _need(data: bytes, pos: int, size: int) -> None:
    if pos + size > len(data):
        raise RtmpError("AMF0 value cut short")


def _decode(data: bytes, pos: int, depth: int) -> tuple[AmfValue, int]:
    if depth > MAX_DEPTH:
        raise RtmpError("AMF0 objects nested too deep")
    _need(data, pos, 1)
    marker = data[pos]
    pos += 1
    if marker == 0x00:
        _need(data, pos, 8)
        number = struct.unpack_from(">d", data, pos)[0]
        return (number if math.isfinite(number) else 0.0), pos + 8
    if marker == 0x01:
        _need(data, pos, 1)
        return data[pos] != 0, pos + 1
    if marker in (0x02, 0x0C):
        width = 2 if marker == 0x02 else 4
        _need(data, pos, width)
        size = int.from_bytes(data[pos : pos + width], "big")
        pos += width
        _need(data, pos, size)
        return data[pos : pos + size].decode("utf-8", "replace"), pos + size
    if marker in (0x05, 0x06):
        return None, pos
    if marker in (0x03, 0x08):
        if marker == 0x08:
            _need(data, pos, 4)
            pos += 4  # the ECMA array's count is a hint; the end marker ends it
        table: dict[str, AmfValue] = {}
        while True:
            _need(data, pos, 3)
            size = int.from_bytes(data[pos : pos + 2], "big")
            if size == 0 and data[pos + 2] == 0x09:
                return table, pos + 3
            pos += 2
            _need(data, pos, size)
            key = data[pos : pos + size].decode("utf-8", "replace")
            value, pos = _decode(data, pos + size, depth + 1)
            table[key] = value
    if marker == 0x0A:
        _need(data, pos, 4)
        count = int.from_bytes(data[pos : pos + 4], "big")
        pos += 4
        if count > len(data) - pos:  # each value is at least a byte: a count past that is a lie
            raise RtmpError("AMF0 array longer than its message")
        items: list[AmfValue] = []
        for _ in range(count):
            item, pos = _decode(data, pos, depth + 1)
            items.append(item)
        return items, pos
    if marker == 0x0B:
        _need(data, pos, 10)
        return struct.unpack_from(">d", data, pos)[0], pos + 10
    raise RtmpError(f"AMF0 type {marker:#x} is not one a server sends")


# -- messages to chunks (section 5.3) -----------------------------------------------------------


def chunk(csid: int, type_id: int, stream_id: int, timestamp: int, payload: bytes, size: int = OUT_CHUNK_SIZE) -> bytes:
    """One message as chunks: a type-0 header, then type-3 continuations every ``size`` bytes."""
    if not 2 <= csid <= 63:
        raise ValueError("edge sends on chunk streams 2 to 63")
    timestamp &= 0xFFFFFFFF
    extended = timestamp >= 0xFFFFFF
    stamp = 0xFFFFFF if extended else timestamp
    tail = struct.pack(">I", timestamp) if extended else b""
    header = (
        bytes([csid])
        + stamp.to_bytes(3, "big")
        + len(payload).to_bytes(3, "big")
        + bytes([type_id])
        + struct.pack("<I", stream_id)
        + tail
    )
    parts = [header, payload[:size]]
    continuation = bytes([0xC0 | csid]) + tail
    for start in range(size, len(payload), size):
        parts += [continuation, payload[start : start + size]]
    return b"".join(parts)


def control(type_id: int, value: int) -> bytes:
    """A protocol control message with one 32-bit value (chunk size, acknowledgement, window)."""
    return chunk(CONTROL_CSID, type_id, 0, 0, struct.pack(">I", value))


def command(name: str, transaction: float, *args: AmfValue, stream_id: int = 0) -> bytes:
    return chunk(COMMAND_CSID, COMMAND_AMF0, stream_id, 0, amf_encode(name, transaction, *args))


# -- chunks to messages (what the server sends) -------------------------------------------------


@dataclass(slots=True)
class _ChunkStream:
    timestamp: int = 0
    delta: int = 0
    length: int = 0
    type_id: int = 0
    stream_id: int = 0
    extended: bool = False
    body: bytearray | None = None
    started: bool = False


class ChunkReader:
    """The server's byte stream cut into messages. Set Chunk Size and Abort are applied here; every
    other message is returned, in order."""

    def __init__(self) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self._buffer = bytearray()
        self._streams: dict[int, _ChunkStream] = {}
        self.received = 0  # bytes, for the acknowledgements a server's window asks for

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        self.received += len(data)
        messages: list[Message] = []
        while True:
            message, used = self._next()
            if used == 0:
                break
            del self._buffer[:used]
            if message is not None:
                messages.append(message)
        if len(self._buffer) > self.chunk_size + 32:  # more than a chunk waiting means a bad header
            raise RtmpError("chunk longer than the announced chunk size")
        return messages

    def _next(self) -> tuple[Message | None, int]:
        """The message a whole chunk at the buffer's start completes (or None), and the bytes it
        used; (None, 0) while the chunk is not all here yet."""
        buf = self._buffer
        if not buf:
            return None, 0
        fmt, csid = buf[0] >> 6, buf[0] & 0x3F
        pos = 1
        if csid == 0:
            if len(buf) < 2:
                return None, 0
            csid, pos = 64 + buf[1], 2
        elif csid == 1:
            if len(buf) < 3:
                return None, 0
            csid, pos = 64 + buf[1] + 256 * buf[2], 3
        header = (11, 7, 3, 0)[fmt]
        if len(buf) < pos + header:
            return None, 0
        stream = self._streams.get(csid)
        if stream is None:
            if fmt != 0:
                raise RtmpError(f"chunk stream {csid} starts without a full header")
            if len(self._streams) >= MAX_CHUNK_STREAMS:
                raise RtmpError("too many chunk streams")
            stream = _ChunkStream()
        stamp = int.from_bytes(buf[pos : pos + 3], "big") if fmt < 3 else 0
        length, type_id = stream.length, stream.type_id
        if fmt <= 1:
            length = int.from_bytes(buf[pos + 3 : pos + 6], "big")
            type_id = buf[pos + 6]
        stream_id = struct.unpack_from("<I", buf, pos + 7)[0] if fmt == 0 else stream.stream_id
        pos += header
        extended = stamp == 0xFFFFFF if fmt < 3 else stream.extended
        if extended:
            if len(buf) < pos + 4:
                return None, 0
            stamp = struct.unpack_from(">I", buf, pos)[0]
            pos += 4
        starting = stream.body is None
        if not starting and fmt != 3:
            raise RtmpError("a new message header inside a message")
        if starting and fmt == 3 and not stream.started:
            raise RtmpError(f"chunk stream {csid} continues a message it never began")
        if length > MAX_MESSAGE:
            raise RtmpError(f"a {length}-byte message from the server")
        done = 0 if stream.body is None else len(stream.body)
        take = min(self.chunk_size, length - done)
        if len(buf) < pos + take:
            return None, 0
        # The whole chunk is here: only now does it change the stream's state.
        if starting:
            if fmt == 0:
                stream.timestamp, stream.delta = stamp, 0
            elif fmt in (1, 2):
                stream.delta = stamp
                stream.timestamp = (stream.timestamp + stamp) & 0xFFFFFFFF
            else:
                stream.timestamp = (stream.timestamp + stream.delta) & 0xFFFFFFFF
        stream.length, stream.type_id, stream.stream_id = length, type_id, stream_id
        stream.extended = extended
        stream.started = True
        self._streams[csid] = stream
        body = stream.body if stream.body is not None else bytearray()
        body += buf[pos : pos + take]
        pos += take
        if len(body) < stream.length:
            stream.body = body
            return None, pos
        stream.body = None
        message = Message(stream.type_id, stream.stream_id, stream.timestamp, bytes(body))
        return self._control(message), pos

    def _control(self, message: Message) -> Message | None:
        if message.type_id == SET_CHUNK_SIZE:
            if len(message.payload) < 4:
                raise RtmpError("Set Chunk Size without its size")
            size = struct.unpack_from(">I", message.payload)[0] & 0x7FFFFFFF
            if size < 1:
                raise RtmpError("chunk size 0")
            self.chunk_size = min(size, MAX_MESSAGE)
            return None
        if message.type_id == ABORT:
            if len(message.payload) >= 4:
                aborted = self._streams.get(struct.unpack_from(">I", message.payload)[0])
                if aborted is not None:
                    aborted.body = None
            return None
        return message


def status_text(info: AmfValue) -> str:
    """What a server's ``_error`` or ``onStatus`` says, as one line (code and description)."""
    if isinstance(info, dict):
        code = info.get("code")
        description = info.get("description")
        parts = [str(p) for p in (code, description) if isinstance(p, str) and p]
        if parts:
            return ": ".join(parts)[:300]
    return "no reason given"


def command_parts(payload: bytes) -> tuple[str, float, Sequence[AmfValue]]:
    """(name, transaction id, the rest) of an AMF0 command."""
    values = amf_decode(payload)
    if len(values) < 2 or not isinstance(values[0], str) or not isinstance(values[1], float | int):
        raise RtmpError("a command without its name and transaction id")
    return values[0], float(values[1]), values[2:]
