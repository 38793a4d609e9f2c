"""PyAV's muxers writing into memory: access units in, the bytes of FLV (for RTMP) or RTP
packets (for RTSP) out, never decoded.

The muxer writes to a Python object, not to a URL: FFmpeg's own network code runs with the
interpreter lock held under PyAV, so a slow server would stall every thread (``link.py`` does
the network instead). The one copy per target is the packet PyAV makes of the unit's bytes.

Timestamps are the units' capture times from the connection's first unit on (milliseconds in
FLV, 90 kHz in RTP), kept strictly increasing: a camera that paused or reconnected shows as the
gap it was, not as a burst of frames.
"""

from __future__ import annotations

from fractions import Fraction

import av

from ..fanout.units import AccessUnit

TIME_BASE = Fraction(1, 90_000)
RTP_PACKET = 1400  # bytes, under a typical path MTU once RTSP's 4-byte framing is added


class _Sink:
    """What the muxer writes to: each write kept as one chunk (the RTP muxer flushes each
    packet on its own, so for RTP a chunk is a packet)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def take(self) -> list[bytes]:
        chunks, self.chunks = self.chunks, []
        return chunks


class Muxer:
    """One connection's muxer: ``format`` is ``flv`` or ``rtp``."""

    def __init__(self, format: str, first: AccessUnit, fps: float) -> None:
        self._sink = _Sink()
        options = {"packetsize": str(RTP_PACKET)} if format == "rtp" else {}
        # Not seekable, so each packet is flushed as it is muxed (nothing waits in a buffer).
        self._container = av.open(self._sink, "w", format=format, options=options, buffer_size=65536)
        rate = Fraction(fps).limit_denominator(1001)
        self._stream = self._container.add_mux_stream(
            "h264", rate=rate, width=first.params.width, height=first.params.height
        )
        self._stream.time_base = TIME_BASE
        self._origin = first.timestamp
        self._last = -90  # so that the first unit is at 0
        self._closed = False

    def write(self, unit: AccessUnit) -> list[bytes]:
        """The bytes ``unit`` became (the first call: the header too)."""
        packet = av.Packet(unit.data)
        stamp = max(round((unit.timestamp - self._origin) * 90_000), self._last + 90)  # >= 1 ms on
        self._last = stamp
        packet.pts = packet.dts = stamp
        packet.time_base = TIME_BASE
        packet.stream = self._stream
        packet.is_keyframe = unit.key
        self._container.mux(packet)
        return self._sink.take()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._container.close()
        except (av.FFmpegError, OSError, ValueError):
            pass  # the trailer of a stream the server already dropped
