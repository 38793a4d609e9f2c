"""Multipart MJPEG streaming (``multipart/x-mixed-replace``), the format an ``<img>`` plays.

The boundary follows each frame rather than preceding the next one: a browser paints a
part only when it sees the next boundary, so boundary-after-frame shows each frame as
soon as it arrives instead of one frame late.

The part is framed here once per frame for everyone: HTTP/1.1 clients get it as a whole
chunk (``<hex length>\\r\\n`` + part + ``\\r\\n``), HTTP/1.0 clients as it is (their body ends
when the connection closes).
"""

from __future__ import annotations

from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from ..fanout.broadcast import Subscriber
from ..fanout.connections import Connection, StreamKind
from ..fanout.slot import Frame, Payload
from .camera import Camera
from .state import EdgeState
from .stream import GONE, Ending, Stream

BOUNDARY = "edgeframe"
STREAM_HEADERS = [
    (b"content-type", b"multipart/x-mixed-replace; boundary=" + BOUNDARY.encode()),
    (b"cache-control", b"no-store, no-cache, must-revalidate, max-age=0"),
    (b"pragma", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
PREAMBLE = b"--" + BOUNDARY.encode() + b"\r\n"
_TAIL = b"\r\n--" + BOUNDARY.encode() + b"\r\n"


def part(frame: Frame) -> bytes:
    """The multipart part of a frame, boundary after it (§4 of ``docs/interface.md``)."""
    head = b"Content-Type: image/jpeg\r\nContent-Length: %d\r\nX-Timestamp: %.6f\r\n\r\n" % (
        len(frame.jpeg),
        frame.timestamp,
    )
    return head + frame.jpeg + _TAIL


class MJPEGResponse(Response):
    """An endless MJPEG body for one client, registered as a stream while it runs."""

    def __init__(self, state: EdgeState, camera: Camera, fps_cap: float | None) -> None:
        # Not Response.__init__: it would add "content-length: 0" to an endless body.
        self.status_code = 200
        self.raw_headers = list(STREAM_HEADERS)
        self.background = None
        self.state = state
        self.camera = camera
        self.fps_cap = fps_cap

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await MJPEGStream(self.state, self.camera, scope, receive, send, self.fps_cap).serve()


class MJPEGStream(Stream):
    kind = StreamKind.MJPEG

    def __init__(
        self, state: EdgeState, camera: Camera, scope: Scope, receive: Receive, send: Send, fps_cap: float | None
    ) -> None:
        super().__init__(state, camera, scope, receive, send)
        self.fps_cap = fps_cap

    async def refuse(self, message: str) -> None:
        await over_capacity(message)(self.scope, self.receive, self.send)

    async def start(self, conn: Connection) -> bool:
        conn.fps_cap = self.fps_cap
        await self.send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})
        if self.scope["method"] == "HEAD":
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})
            return False
        await self.send({"type": "http.response.body", "body": PREAMBLE, "more_body": True})
        return True

    def payload(self) -> Payload:
        return part

    async def watch(self, sub: Subscriber) -> Ending:
        # Some servers' send() to a vanished client just returns, so a loop that only sends
        # never notices; the receive channel always says.
        while (await self.receive())["type"] != "http.disconnect":
            pass
        return GONE

    async def finish(self, ending: Ending) -> None:
        if ending.why == "shutdown":  # end the body properly so the client sees a clean end
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})


def over_capacity(message: str) -> Response:
    return JSONResponse({"error": message}, status_code=503, headers={"Retry-After": "2"})
