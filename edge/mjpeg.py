"""Multipart MJPEG streaming (``multipart/x-mixed-replace``), the format an ``<img>`` plays.

The boundary follows each frame rather than preceding the next one: a browser paints a
part only when it sees the next boundary, so boundary-after-frame shows each frame as
soon as it arrives instead of one frame late.
"""

from __future__ import annotations

import logging

import anyio
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from .connections import Connection, address_of
from .logs import client_log
from .pump import FramePump, Stalled, flow_of
from .slot import BOUNDARY
from .state import Camera, EdgeState

log = logging.getLogger("edge.mjpeg")

STREAM_HEADERS = [
    (b"content-type", b"multipart/x-mixed-replace; boundary=" + BOUNDARY.encode()),
    (b"cache-control", b"no-store, no-cache, must-revalidate, max-age=0"),
    (b"pragma", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
PREAMBLE = b"--" + BOUNDARY.encode() + b"\r\n"


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
        registry = self.state.registry
        refusal = registry.refusal(address_of(scope))
        if refusal is not None:
            await over_capacity(refusal)(scope, receive, send)
            return
        with registry.open("mjpeg", self.camera.name, scope) as conn, self.camera.watch(conn):
            conn.fps_cap = self.fps_cap
            await self._stream(scope, receive, send, conn)

    async def _stream(self, scope: Scope, receive: Receive, send: Send, conn: Connection) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await send({"type": "http.response.body", "body": PREAMBLE, "more_body": True})
        flow = flow_of(scope)
        pump = FramePump(
            conn,
            self.camera.capture.slot,
            self.camera.config.fps,
            flow,
            self.state.registry.totals_for(self.camera.name, "mjpeg"),
            self.state.metrics.frame_age.labels(self.camera.name, "mjpeg"),
            self.state.config.server.stall_timeout,
        )
        disconnected = False
        async with anyio.create_task_group() as tg:

            async def watch_disconnect() -> None:
                # Some servers' send() to a vanished client just returns, so a loop that
                # only sends never notices; the receive channel always says.
                nonlocal disconnected
                while (await receive())["type"] != "http.disconnect":
                    pass
                disconnected = True
                tg.cancel_scope.cancel()

            tg.start_soon(watch_disconnect)
            with conn.pumping:
                try:
                    while True:
                        frame = await pump.next()
                        part = frame.mjpeg_part
                        await send({"type": "http.response.body", "body": part, "more_body": True})
                        pump.sent(frame, len(part))
                except Stalled as exc:
                    client_log.info("closing the stream: %s", exc)
                    if flow is not None:
                        flow.abort()  # it cannot take even the end of the body
                    disconnected = True
            # Shutdown asked us to stop: end the body properly so the client sees a clean end.
            if not disconnected:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            tg.cancel_scope.cancel()


def over_capacity(message: str) -> Response:
    return JSONResponse({"error": message}, status_code=503, headers={"Retry-After": "2"})
