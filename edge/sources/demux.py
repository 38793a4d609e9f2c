"""H.264 from a container or a network stream, demuxed with PyAV (FFmpeg's libraries) and never
decoded: an RTSP/RTMP camera, an ``.mp4``/``.mkv``/``.h264`` file (§9 of docs/interface.md).

Packets leave FFmpeg's demuxer as whole access units; ``h264_mp4toannexb`` turns the length-
prefixed NAL units of MP4/Matroska into Annex-B (and puts the SPS/PPS of the container's header in
front of key frames); Annex-B input passes through it unchanged. Whether a source is H.264 is only
known once it is open, so the URL and file sources try this first and fall back to OpenCV's
decoding for other codecs (H.265, MPEG-4...), which then says so in ``processing``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import av
import av.bitstream
from av.container import InputContainer
from av.packet import Packet
from av.video.stream import VideoStream

from .base import SourceError

log = logging.getLogger("edge.sources")

OPEN_TIMEOUT = 5.0


class Demuxer:
    """One opening of an H.264 source: its access units in Annex-B, one per :meth:`read`."""

    def __init__(self, description: str, loop: bool) -> None:
        self.description = description  # masked: FFmpeg's messages may quote the URL, never shown
        self.loop = loop
        self.width = 0
        self.height = 0
        self._container: InputContainer | None = None
        self._packets: Iterator[Packet[VideoStream]] | None = None
        self._filter: av.bitstream.BitStreamFilterContext | None = None
        self._reopen: tuple[str, str | None, dict[str, str], float] | None = None

    def open(
        self,
        target: str,
        read_timeout: float,
        network: bool,
        fmt: str | None = None,
        options: dict[str, str] | None = None,
    ) -> bool:
        """Open ``target`` (``fmt``: FFmpeg's input format, e.g. ``v4l2``); False (and closed) when
        its video is not H.264. Raises SourceError."""
        options = dict(options or {})
        if target.lower().startswith("rtsp"):
            options["rtsp_transport"] = "tcp"  # UDP loses packets on Wi-Fi: broken pictures
        if network:
            options["fflags"] = "nobuffer"  # hand packets on as they arrive
        self._reopen = (target, fmt, options, read_timeout)
        try:
            container = av.open(target, format=fmt, options=options, timeout=(OPEN_TIMEOUT, read_timeout))
        except av.FFmpegError as exc:
            # str(exc) names the URL, credentials and all: only FFmpeg's reason is shown.
            raise SourceError(f"{self.description}: cannot open it ({exc.strerror or type(exc).__name__})") from None
        assert isinstance(container, InputContainer)
        if not container.streams.video:
            container.close()
            raise SourceError(f"{self.description}: has no video stream")
        stream = container.streams.video[0]
        if stream.codec_context.name != "h264":
            log.info("%s: its video is %s, not H.264: decoding it", self.description, stream.codec_context.name)
            container.close()
            return False
        self.width = stream.codec_context.width
        self.height = stream.codec_context.height
        self._container = container
        self._filter = av.bitstream.BitStreamFilterContext("h264_mp4toannexb", in_stream=stream)
        self._packets = container.demux(stream)
        return True

    def read(self) -> bytes:
        """The next access unit; at the end a file starts over, a stream raises SourceError."""
        container, packets, bsf = self._container, self._packets, self._filter
        if container is None or packets is None or bsf is None:
            raise SourceError(f"{self.description}: not open")
        restarted = False
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                packet = None
            except av.FFmpegError as exc:
                raise SourceError(f"{self.description}: {exc.strerror or type(exc).__name__}") from None
            if packet is None or packet.size == 0:  # the end (a demuxer's flush packet)
                if not self.loop or restarted:
                    raise SourceError(f"{self.description}: the stream ended")
                self._start_over()
                container, packets, bsf = self._container, self._packets, self._filter
                assert container is not None and packets is not None and bsf is not None
                restarted = True
                continue
            data = b"".join(bytes(out) for out in bsf.filter(packet))
            if data:
                return data

    def rewind_to_key(self) -> None:
        """A file that was paused: start it over (at its first key frame), so the first unit
        after the pause can be decoded without the ones skipped."""
        if self._container is not None:
            self._start_over()

    def _start_over(self) -> None:
        """Back to the start of a file: a seek where the format allows it, else (a raw ``.h264``
        stream cannot seek) the file opened again."""
        container = self._container
        assert container is not None
        stream = container.streams.video[0]
        try:
            container.seek(0, stream=stream)
            self._packets = container.demux(stream)
            return
        except av.FFmpegError:
            pass
        assert self._reopen is not None
        target, fmt, options, read_timeout = self._reopen
        self.close()
        if not self.open(target, read_timeout, network=False, fmt=fmt, options=options):
            raise SourceError(f"{self.description}: its video is no longer H.264")

    def close(self) -> None:
        container, self._container = self._container, None
        self._packets = None
        self._filter = None
        if container is not None:
            try:
                container.close()
            except av.FFmpegError:
                pass
