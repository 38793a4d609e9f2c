"""What a viewer asks for: the page, a camera's stream, snapshot and WebSocket (§3 of
``docs/interface.md``)."""

from __future__ import annotations

import asyncio
import functools
import time
from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.websockets import WebSocket

from ..fanout.broadcast import fps_cap_error
from .camera import Camera
from .h264 import H264Response
from .mjpeg import MJPEGResponse
from .state import EdgeState
from .websocket import serve_websocket

# How long a snapshot of an idle camera waits for a frame captured after the request: enough for
# a source that wakes slowly to deliver, or to be declared stalled so that the NO SIGNAL picture
# comes instead (the stall window is max(2 s, 3 frame periods); an HTTP source may take 5 s to
# answer), so that only a camera whose capture is stuck gets the 503.
WAKE_WAIT_MIN = 10.0


def wake_wait(camera: Camera) -> float:
    return max(WAKE_WAIT_MIN, 2 * max(2.0, 3.0 / camera.config.fps))


class BadRequest(Exception):
    """A request edge answers with ``status`` and a JSON ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def state_of(request: Request | WebSocket) -> EdgeState:
    state: EdgeState = request.app.state.edge
    return state


def camera_of(request: Request) -> Camera:
    name = request.path_params.get("cam")
    camera = state_of(request).camera(name)
    if camera is None:
        raise BadRequest(404, f"unknown camera {name!r}")
    return camera


def fps_cap(request: Request, camera: Camera) -> float | None:
    raw = request.query_params.get("fps")
    if raw is None or raw == "":
        return None
    try:
        fps = float(raw)
    except ValueError:
        raise BadRequest(400, f"fps must be a number, got {raw!r}") from None
    error = fps_cap_error(fps, camera.config.fps)
    if error:
        raise BadRequest(400, f"fps {error}")
    return fps


async def page(request: Request) -> Response:
    action = request.query_params.get("action")
    if action == "stream":  # mjpg-streamer compatible URLs
        return await stream(request)
    if action == "snapshot":
        return await snapshot(request)
    if action is not None:
        raise BadRequest(400, f"unknown action {action!r}; expected 'stream' or 'snapshot'")
    mode = request.query_params.get("mode", "auto")
    if mode not in ("auto", "mjpeg", "ws", "h264", "mp4"):
        raise BadRequest(400, f"mode must be auto, mjpeg, ws, h264 or mp4, got {mode!r}")
    return HTMLResponse(_index_html(), headers={"Cache-Control": "no-cache"})


@functools.cache
def _index_html() -> str:
    return resources.files("edge.web").joinpath("static/index.html").read_text(encoding="utf-8")


async def stream(request: Request) -> Response:
    camera = camera_of(request)
    return MJPEGResponse(state_of(request), camera, fps_cap(request, camera))


async def stream_h264(request: Request) -> Response:
    """The camera's own H.264 as an Annex-B byte stream (§9); 404 for a JPEG camera."""
    return H264Response(state_of(request), camera_of(request))


async def snapshot(request: Request) -> Response:
    """The latest frame; for a camera that was idle, a frame captured after the request came
    (§8): the camera's, or the NO SIGNAL picture if its source failed on waking; 503 with
    Retry-After only if neither comes within :func:`wake_wait` (a capture that is stuck)."""
    camera = camera_of(request)
    capture = camera.capture
    frame = capture.slot.latest
    stale = capture.jpeg_stale
    capture.demand()  # a snapshot keeps the camera awake for idle_after, like a viewer
    if stale and (frame is not None or capture.codec == "h264"):
        # The slot holds a frame from before the camera idled (or, for an H.264 camera, from
        # before it stopped decoding for JPEG): wait for a fresh one.
        wait = wake_wait(camera)
        try:
            # A snapshot waiting for its frame is a viewer: the camera stays awake until it comes.
            with capture.watching():
                frame = await asyncio.wait_for(capture.slot.wait_newer(frame.seq if frame else 0), wait)
        except TimeoutError:
            return JSONResponse(
                {"error": f"camera {camera.name!r} was idle and sent no new frame within {wait:g} s; try again"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
    if frame is None:
        return JSONResponse(
            {"error": f"camera {camera.name!r} has no frame yet; try again in a second"},
            status_code=503,
            headers={"Retry-After": "1"},
        )
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(frame.timestamp))
    headers = {
        "X-Timestamp": f"{frame.timestamp:.6f}",
        "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
        "Content-Disposition": f'inline; filename="{camera.name}-{stamp}.jpg"',
    }
    if frame.placeholder:
        headers["X-Placeholder"] = "1"
    return Response(frame.jpeg, media_type="image/jpeg", headers=headers)


async def websocket(ws: WebSocket) -> None:
    state = state_of(ws)
    await serve_websocket(ws, state, state.camera(ws.path_params.get("cam")))
