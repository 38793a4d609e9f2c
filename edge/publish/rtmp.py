"""Publishing over RTMP (``rtmp://``, ``rtmps://``): what OBS and FFmpeg do to nginx-rtmp,
MediaMTX or a cloud ingest. The handshake, ``connect``, ``createStream`` and ``publish``, then
each FLV tag of PyAV's muxer as one message (``edge/formats/rtmp.py`` has the wire format)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..config.target import PublishTarget
from ..fanout.units import AccessUnit
from ..formats import rtmp
from ..formats.flv import SCRIPT, FlvSplitter
from .link import Link, PublishError
from .muxer import Muxer

FLASH_VERSION = "FMLE/3.0 (compatible; edge)"


class RtmpSession:
    def __init__(self, target: PublishTarget, link: Link, fps: float) -> None:
        self.target = target
        self.link = link
        self.fps = fps
        self._reader = rtmp.ChunkReader()
        self._muxer: Muxer | None = None
        self._flv = FlvSplitter()
        self._stream_id = 0
        self._window = 0
        self._acked = 0
        self._published = False

    def open(self, first: AccessUnit) -> None:
        link = self.link
        link.connect()
        link.send(rtmp.handshake_c0c1(os.urandom(rtmp.HANDSHAKE_SIZE - 8)))
        link.send(rtmp.handshake_c2(self._exactly(1 + 2 * rtmp.HANDSHAKE_SIZE)))
        target = self.target
        app, stream = target.rtmp_app, target.rtmp_stream
        tc_url = f"{target.scheme}://{target.netloc}/{app}"
        link.send(rtmp.control(rtmp.SET_CHUNK_SIZE, rtmp.OUT_CHUNK_SIZE))
        link.send(
            rtmp.command("connect", 1, {"app": app, "type": "nonprivate", "flashVer": FLASH_VERSION, "tcUrl": tc_url})
        )
        self._result(1, "the connection (connect)")
        link.send(
            rtmp.command("releaseStream", 2, None, stream)
            + rtmp.command("FCPublish", 3, None, stream)
            + rtmp.command("createStream", 4, None)
        )
        created = self._result(4, "a stream (createStream)")
        ident = created[1] if len(created) > 1 else None
        if not isinstance(ident, float) or not 0 < ident < 2**31:
            raise PublishError("the server gave no stream id for createStream")
        self._stream_id = int(ident)
        link.send(rtmp.command("publish", 5, None, stream, "live", stream_id=self._stream_id))
        self._status("NetStream.Publish.Start")
        self._published = True
        self._muxer = Muxer("flv", first, self.fps)

    def send(self, unit: AccessUnit) -> None:
        assert self._muxer is not None
        out = []
        for tag in self._flv.feed(b"".join(self._muxer.write(unit))):
            if tag.type_id == SCRIPT:  # onMetaData, which a publisher sends as @setDataFrame
                payload = rtmp.amf_encode("@setDataFrame") + tag.payload
                out.append(rtmp.chunk(rtmp.DATA_CSID, tag.type_id, self._stream_id, tag.timestamp, payload))
            else:
                out.append(rtmp.chunk(rtmp.VIDEO_CSID, tag.type_id, self._stream_id, tag.timestamp, tag.payload))
        self.link.send(b"".join(out))

    def poll(self) -> None:
        """Read what the server sent meanwhile: an error ends the session."""
        data = self.link.receive(0.0)
        if data:
            for message in self._reader.feed(data):
                self._handle(message)

    def close(self, abort: bool) -> None:
        try:
            if self._published and not abort:
                self.link.send(
                    rtmp.command("FCUnpublish", 6, None, self.target.rtmp_stream)
                    + rtmp.command("deleteStream", 7, None, float(self._stream_id))
                )
        except Exception:  # a goodbye to a server that is gone: nothing to do about it
            pass
        finally:
            if self._muxer is not None:
                self._muxer.close()
            self.link.close(abort)

    # -- replies ----------------------------------------------------------------------------

    def _exactly(self, size: int) -> bytes:
        data = bytearray()

        def enough(chunk: bytes) -> bytes | None:
            data.extend(chunk)
            # the server's first messages come after our C2, so nothing past S2 is lost here
            return bytes(data[:size]) if len(data) >= size else None

        return self.link.answer(enough, "the RTMP handshake")

    def _messages(self, what: str) -> Sequence[rtmp.Message]:
        return self.link.answer(self._reader.feed, what)

    def _result(self, transaction: int, what: str) -> Sequence[rtmp.AmfValue]:
        while True:
            for message in self._messages(what):
                reply = self._handle(message)
                if reply is None:
                    continue
                name, txn, args = reply
                if txn != transaction:
                    continue
                if name == "_error":
                    info = args[1] if len(args) > 1 else None
                    raise PublishError(f"the server refused {what}: {rtmp.status_text(info)}")
                if name == "_result":
                    return args

    def _status(self, wanted: str) -> None:
        while True:
            for message in self._messages("publish"):
                reply = self._handle(message)
                if reply is not None and reply[0] == "onStatus":
                    info = reply[2][1] if len(reply[2]) > 1 else None
                    if isinstance(info, dict) and info.get("code") == wanted:
                        return

    def _handle(self, message: rtmp.Message) -> tuple[str, float, Sequence[rtmp.AmfValue]] | None:
        """Act on a server message; a command is returned to who waits for it."""
        if message.type_id == rtmp.WINDOW_ACK_SIZE and len(message.payload) >= 4:
            self._window = int.from_bytes(message.payload[:4], "big")
        if self._window and self._reader.received - self._acked >= self._window:
            self._acked = self._reader.received
            self.link.send(rtmp.control(rtmp.ACKNOWLEDGEMENT, self._acked & 0xFFFFFFFF))
        if message.type_id != rtmp.COMMAND_AMF0:
            return None
        name, txn, args = rtmp.command_parts(message.payload)
        if name == "onStatus":
            info = args[1] if len(args) > 1 else None
            if isinstance(info, dict) and info.get("level") == "error":
                raise PublishError(f"the server stopped the stream: {rtmp.status_text(info)}")
        return name, txn, args
