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

from .connections import Connection, Registry, remote_of
from .pump import FramePump, flow_of
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
        if registry.full:
            await over_capacity(registry)(scope, receive, send)
            return
        with registry.open("mjpeg", self.camera.name, remote_of(scope)) as conn:
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
            flow.drain if flow else None,
            self.state.registry.totals_for(self.camera.name, "mjpeg"),
            self.state.metrics.frame_age.labels(self.camera.name, "mjpeg"),
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
                while True:
                    frame = await pump.next()
                    part = frame.mjpeg_part
                    await send({"type": "http.response.body", "body": part, "more_body": True})
                    pump.sent(frame, len(part))
            # Shutdown asked us to stop: end the body properly so the client sees a clean end.
            if not disconnected:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            tg.cancel_scope.cancel()


def over_capacity(registry: Registry) -> Response:
    if registry.stopping:
        message = "the server is shutting down; try again shortly"
    else:
        message = f"all {registry.max_clients} stream slots are in use; try again shortly"
    return JSONResponse({"error": message}, status_code=503, headers={"Retry-After": "2"})
