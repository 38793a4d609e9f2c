"""Starlette app factory: routes, lifespan (capture threads), status, health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import resource
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Match, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from . import __version__
from .access import AccessControl, deny
from .broadcast import fps_cap_error
from .capture import State
from .config import Config
from .mjpeg import MJPEGResponse
from .redact import redact_source
from .state import Camera, EdgeState
from .websocket import serve_websocket

log = logging.getLogger("edge.app")

FIRST_FRAME_WAIT = 3.0  # start-up waits this long for each camera's first frame
WAKE_WAIT = 3.0  # how long a snapshot waits for an idle camera's first fresh frame
CAPTURE_STOP_TIMEOUT = 1.5  # shutdown waits this long for capture threads (daemons: the process exits anyway)


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _RevalidatedStaticFiles(StaticFiles):
    """The page's scripts change with the appliance's version: make browsers revalidate them
    so an upgraded page never runs with yesterday's cached JavaScript."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response


def create_app(config: Config) -> Starlette:
    state = EdgeState.build(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        for cam in state.cameras.values():
            cam.capture.slot.attach(loop)
            cam.capture.start()
        await _first_frames(state)
        try:
            yield
        finally:
            await loop.run_in_executor(None, _stop_captures, state)

    routes = [
        Route("/", _page, methods=["GET", "HEAD"]),
        Route("/stream", _stream, methods=["GET", "HEAD"]),
        Route("/stream.mjpg", _stream, methods=["GET", "HEAD"]),
        Route("/cameras/{cam}/stream", _stream, methods=["GET", "HEAD"]),
        Route("/snapshot", _snapshot, methods=["GET", "HEAD"]),
        Route("/snapshot.jpg", _snapshot, methods=["GET", "HEAD"]),
        Route("/cameras/{cam}/snapshot", _snapshot, methods=["GET", "HEAD"]),
        WebSocketRoute("/ws", _websocket),
        WebSocketRoute("/cameras/{cam}/ws", _websocket),
        Route("/api/status", _status),
        Route("/healthz", _healthz),
        Route("/readyz", _readyz),
        Route("/metrics", _metrics),
        Mount("/static", _http_only(_RevalidatedStaticFiles(packages=[("edge", "static")])), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(AccessControl, config=config.server)],
        exception_handlers={BadRequest: _bad_request, 404: _not_found, 405: _not_allowed},
    )
    # Starlette's slash redirects are absolute URLs built from the Host header: behind a proxy
    # they drop its path prefix, and a forged Host picks where the client goes. _not_found
    # answers them with a relative Location instead.
    app.router.redirect_slashes = False
    app.router.default = _no_route(app.router.default)
    app.state.edge = state
    return app


def _http_only(app: ASGIApp) -> ASGIApp:
    """A mount serves every scope type it matches; a WebSocket upgrade under it gets the same
    JSON 404 as anywhere else without a WebSocket route."""
    not_found = _no_route(app)

    async def http_only(scope: Scope, receive: Receive, send: Send) -> None:
        await (not_found if scope["type"] == "websocket" else app)(scope, receive, send)

    return http_only


def _no_route(http_default: ASGIApp) -> ASGIApp:
    """A WebSocket upgrade to a path without a WebSocket route gets a JSON 404 (Starlette's
    default closes it before accepting, which a client sees as a bare 403)."""

    async def default(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            response = JSONResponse({"error": f"no WebSocket at {scope['path']}"}, status_code=404)
            await deny(response, scope, receive, send)
            return
        await http_default(scope, receive, send)

    return default


async def _first_frames(state: EdgeState) -> None:
    """Give each camera a moment to produce a frame so the first snapshot is not a 503."""
    slots = [cam.capture.slot.wait_newer(0) for cam in state.cameras.values()]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*slots), FIRST_FRAME_WAIT)


def _stop_captures(state: EdgeState) -> None:
    # Tell every camera first, then wait for all against one deadline: a source stuck in a
    # blocking read must not hold up the others' release.
    captures = [cam.capture for cam in state.cameras.values()]
    for capture in captures:
        capture.request_stop()
    deadline = time.monotonic() + CAPTURE_STOP_TIMEOUT
    for capture in captures:
        capture.join(max(deadline - time.monotonic(), 0.0))


def _state(request: Request | WebSocket) -> EdgeState:
    state: EdgeState = request.app.state.edge
    return state


def _camera(request: Request) -> Camera:
    name = request.path_params.get("cam")
    camera = _state(request).camera(name)
    if camera is None:
        raise BadRequest(404, f"unknown camera {name!r}")
    return camera


def _fps_cap(request: Request, camera: Camera) -> float | None:
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


async def _page(request: Request) -> Response:
    action = request.query_params.get("action")
    if action == "stream":  # mjpg-streamer compatible URLs
        return await _stream(request)
    if action == "snapshot":
        return await _snapshot(request)
    if action is not None:
        raise BadRequest(400, f"unknown action {action!r}; expected 'stream' or 'snapshot'")
    mode = request.query_params.get("mode", "auto")
    if mode not in ("auto", "mjpeg", "ws"):
        raise BadRequest(400, f"mode must be auto, mjpeg or ws, got {mode!r}")
    return HTMLResponse(_index_html(), headers={"Cache-Control": "no-cache"})


@functools.cache
def _index_html() -> str:
    return resources.files("edge").joinpath("static/index.html").read_text(encoding="utf-8")


async def _stream(request: Request) -> Response:
    camera = _camera(request)
    return MJPEGResponse(_state(request), camera, _fps_cap(request, camera))


async def _snapshot(request: Request) -> Response:
    camera = _camera(request)
    capture = camera.capture
    frame = capture.slot.latest
    idle = capture.idle
    capture.demand()  # a snapshot keeps the camera awake for idle_after, like a viewer
    if idle and frame is not None:
        # The slot holds the frame from before the camera idled: wait for a fresh one.
        with contextlib.suppress(TimeoutError):
            frame = await asyncio.wait_for(capture.slot.wait_newer(frame.seq), WAKE_WAIT)
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


async def _websocket(websocket: WebSocket) -> None:
    state = _state(websocket)
    await serve_websocket(websocket, state, state.camera(websocket.path_params.get("cam")))


async def _status(request: Request) -> Response:
    state = _state(request)
    server = state.config.server
    cameras = [_camera_status(state, cam) for cam in state.cameras.values()]
    body = {
        "version": __version__,
        "uptime_s": round(time.monotonic() - state.started, 1),
        "clients_total": len(state.registry),
        "max_clients": state.registry.max_clients,
        "max_streams_per_address": state.registry.max_per_address,
        "open_files_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "access": {
            "auth": server.auth is not None,
            "tokens": server.tokens_file is not None,
            "tls": server.tls is not None,
        },
        "cameras": cameras,
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def _camera_status(state: EdgeState, cam: Camera) -> dict[str, Any]:
    capture = cam.capture
    return {
        "name": cam.name,
        "source": capture.source_description,
        "source_kind": capture.source_kind,
        "configured_source": redact_source(cam.config.source)
        if isinstance(cam.config.source, str)
        else cam.config.source,
        "state": capture.state.value,
        "problem": capture.problem,
        "passthrough": capture.passthrough,
        "processing": capture.processing,
        "idle": capture.idle,
        "width": capture.width,
        "height": capture.height,
        "fps": round(capture.measured_fps(), 2),
        "configured_fps": cam.config.fps,
        "frames_captured": capture.frames_captured,
        "frames_invalid": sum(capture.frames_invalid.values()),
        "frames_same_dropped": capture.frames_same_dropped,
        "clients": [conn.as_status() for conn in state.registry.for_camera(cam.name)],
    }


async def _healthz(request: Request) -> Response:
    dead = [cam.name for cam in _state(request).cameras.values() if not cam.capture.alive]
    if dead:
        return JSONResponse({"status": "unhealthy", "reason": f"capture thread not running: {', '.join(dead)}"}, 503)
    return JSONResponse({"status": "ok"})


async def _readyz(request: Request) -> Response:
    now = time.monotonic()
    problems = []
    for cam in _state(request).cameras.values():
        window = max(2.0, 3.0 / cam.config.fps)
        capture = cam.capture
        if capture.idle and capture.state is State.STREAMING:
            continue  # idle on purpose: the source is fine, nobody is watching
        if capture.state is not State.STREAMING or now - capture.last_real_frame > window:
            problems.append(f"{cam.name}: no real frame in the last {window:g} s (state {capture.state.value})")
    if problems:
        return JSONResponse({"status": "not ready", "reason": "; ".join(problems)}, 503)
    return JSONResponse({"status": "ready"})


async def _metrics(request: Request) -> Response:
    return Response(_state(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def _bad_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadRequest)
    return JSONResponse({"error": exc.message}, status_code=exc.status)


async def _not_found(request: Request, exc: Exception) -> Response:
    location = _slash_redirect(request)
    if location is not None:
        return Response(status_code=307, headers={"Location": location})
    return JSONResponse({"error": f"no such path: {request.url.path}"}, status_code=404)


def _slash_redirect(request: Request) -> str | None:
    """A relative ``Location`` for a path that exists with (or without) one trailing slash:
    it resolves against whatever URL the client used, reverse-proxy prefix included."""
    path = request.scope["path"]
    if path == "/" or path.endswith("//"):
        return None
    other = path[:-1] if path.endswith("/") else path + "/"
    scope = {**request.scope, "path": other}
    if not any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
        return None
    last = quote(other.rstrip("/").rsplit("/", 1)[-1])
    location = f"../{last}" if path.endswith("/") else f"{last}/"
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{location}?{query}" if query else location


async def _not_allowed(request: Request, exc: Exception) -> Response:
    headers = dict(getattr(exc, "headers", None) or {})  # Starlette's 405 carries the Allow header
    if "Allow" in headers:  # built from a set: its order changes from one process to the next
        headers["Allow"] = ", ".join(sorted(m.strip() for m in headers["Allow"].split(",")))
    return JSONResponse({"error": f"method {request.method} not allowed here"}, status_code=405, headers=headers)
