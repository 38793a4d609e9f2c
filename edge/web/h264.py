"""An H.264 camera's own H.264 to viewers (§9 of ``docs/interface.md``): raw Annex-B over HTTP
(``/stream.h264``, for ffmpeg, VLC, go2rtc, Frigate), and the payloads of the WebSocket's
``?codec=h264`` (Annex-B units, for WebCodecs) and ``?codec=mp4`` (fMP4 fragments, for Media
Source Extensions).

Each payload is made once per access unit for every viewer of its kind; units go out from the
camera's key-frame broadcast (``fanout/keyframes.py``), which starts every viewer at a key frame.
"""

from __future__ import annotations

import asyncio
import struct
import time

from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from ..fanout.broadcast import Broadcast, Subscriber
from ..fanout.connections import Connection, StreamKind, Totals
from ..fanout.keyframes import UnitSubscriber
from ..fanout.slot import Payload
from ..fanout.units import AccessUnit, InitSegment
from ..fanout.wire import Wire
from ..formats import fmp4
from ..formats.h264 import split_nals_for_sample
from .camera import Camera
from .mjpeg import over_capacity
from .state import EdgeState
from .stream import GONE, Ending, Stream

#: How long a request for H.264 waits for a camera whose source has not said yet what it delivers
#: (a pipe before its first bytes, an RTSP camera still answering).
CODEC_WAIT = 5.0
CODEC_POLL = 0.05

KEY, INIT = 0x01, 0x02  # flags byte of a WebSocket H.264 message (§9)
_HEADER = struct.Struct(">QdB")

STREAM_HEADERS = [
    (b"content-type", b"video/h264"),
    (b"cache-control", b"no-store, no-cache, must-revalidate, max-age=0"),
    (b"pragma", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def annexb(unit: AccessUnit) -> bytes:
    """``/stream.h264``: the unit's bytes as the source gave them."""
    return unit.data


def ws_h264(unit: AccessUnit) -> bytes:
    """``?codec=h264``: seq, capture time, flags, then the unit in Annex-B."""
    return _HEADER.pack(unit.seq, unit.timestamp, KEY if unit.key else 0) + unit.data


def ws_mp4(unit: AccessUnit) -> bytes:
    """``?codec=mp4``: seq, capture time, flags, then one ``moof`` + ``mdat`` holding the unit."""
    sample = fmp4.sample(split_nals_for_sample(unit.data))
    fragment = fmp4.fragment(unit.seq, unit.pts, unit.duration, sample, unit.key)
    return _HEADER.pack(unit.seq, unit.timestamp, KEY if unit.key else 0) + fragment


def ws_mp4_init(init: InitSegment) -> bytes:
    """The message before an fMP4 viewer's first key frame (and after a parameter change)."""
    params = init.params
    segment = fmp4.init_segment(params.sps, params.pps, params.width, params.height)
    return _HEADER.pack(init.seq, init.timestamp, INIT) + segment


def mime(codec: str) -> str:
    return f'video/mp4; codecs="{codec}"'


async def h264_refusal(camera: Camera) -> str | None:
    """Why ``camera`` cannot serve H.264 now (None: it can): it is a JPEG camera, or its source has
    not delivered an access unit yet. Waits up to :data:`CODEC_WAIT` for a source still opening."""
    capture = camera.capture
    deadline = time.monotonic() + CODEC_WAIT
    while capture.codec is None or (capture.codec == "h264" and capture.units.params is None):
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(CODEC_POLL)  # the capture thread decides; nothing to await across threads
    if capture.codec == "h264" and capture.units.params is not None:
        return None
    if capture.codec == "h264" or capture.codec is None:
        return f"camera {camera.name!r} has not delivered H.264 yet (its source: {capture.state}); try again shortly"
    return (
        f"camera {camera.name!r} is a JPEG camera (codec: mjpeg); H.264 is served for cameras whose source "
        "delivers it (codec: h264 or auto); use /stream or the WebSocket without ?codec="
    )


class H264Response(Response):
    """An endless Annex-B body for one client (``/stream.h264``)."""

    def __init__(self, state: EdgeState, camera: Camera) -> None:
        self.status_code = 200
        self.raw_headers = list(STREAM_HEADERS)
        self.background = None
        self.state = state
        self.camera = camera

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = await h264_refusal(self.camera)
        if refusal is not None:
            status = 503 if self.camera.capture.codec != "mjpeg" else 404
            headers = {"Retry-After": "2"} if status == 503 else None
            await JSONResponse({"error": refusal}, status_code=status, headers=headers)(scope, receive, send)
            return
        await H264Stream(self.state, self.camera, scope, receive, send).serve()


class H264Stream(Stream):
    kind = StreamKind.H264

    async def refuse(self, message: str) -> None:
        await over_capacity(message)(self.scope, self.receive, self.send)

    async def start(self, conn: Connection) -> bool:
        await self.send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})
        if self.scope["method"] == "HEAD":
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})
            return False
        return True

    def broadcast(self) -> Broadcast:
        return self.camera.units

    def subscriber(self, conn: Connection, wire: Wire, totals: Totals) -> Subscriber:
        return UnitSubscriber(conn, wire, wire.frame(self.payload()), totals)

    def payload(self) -> Payload:
        return annexb

    async def watch(self, sub: Subscriber) -> Ending:
        while (await self.receive())["type"] != "http.disconnect":
            pass
        return GONE

    async def finish(self, ending: Ending) -> None:
        if ending.why == "shutdown":
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})
