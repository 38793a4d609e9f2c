"""The Starlette app: routes (``endpoints.py``, ``status.py``), access control in front of all of
them (``access.py``), the lifespan that runs the capture threads, and edge's own answers to
errors (JSON bodies, relative slash redirects, 404 for a WebSocket upgrade without a route)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import Config
from . import endpoints, status
from .access import AccessControl, deny
from .camera import Camera
from .endpoints import BadRequest
from .state import EdgeState

log = logging.getLogger("edge.app")

FIRST_FRAME_WAIT = 3.0  # start-up waits this long for each camera's first frame
CAPTURE_STOP_TIMEOUT = 1.5  # shutdown waits this long for capture threads (daemons: the process exits anyway)


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
            cam.capture.units.attach(loop)
            cam.capture.start()
            cam.publisher.start()  # never waited for: a target that is down only retries
        await _first_frames(state)
        try:
            yield
        finally:
            await loop.run_in_executor(None, _stop_captures, state)

    get = ["GET", "HEAD"]
    routes = [
        Route("/", endpoints.page, methods=get),
        Route("/stream", endpoints.stream, methods=get),
        Route("/stream.mjpg", endpoints.stream, methods=get),
        Route("/cameras/{cam}/stream", endpoints.stream, methods=get),
        Route("/stream.h264", endpoints.stream_h264, methods=get),
        Route("/cameras/{cam}/stream.h264", endpoints.stream_h264, methods=get),
        Route("/snapshot", endpoints.snapshot, methods=get),
        Route("/snapshot.jpg", endpoints.snapshot, methods=get),
        Route("/cameras/{cam}/snapshot", endpoints.snapshot, methods=get),
        WebSocketRoute("/ws", endpoints.websocket),
        WebSocketRoute("/cameras/{cam}/ws", endpoints.websocket),
        Route("/api/status", status.status),
        Route("/healthz", status.healthz),
        Route("/readyz", status.readyz),
        Route("/metrics", status.metrics),
        Mount("/static", _http_only(_RevalidatedStaticFiles(packages=[("edge.web", "static")])), name="static"),
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

    async def first(cam: Camera) -> None:
        # A JPEG frame, or an H.264 camera's first unit (its JPEG is made only when asked for).
        waits = [
            asyncio.ensure_future(cam.capture.slot.wait_newer(0)),
            asyncio.ensure_future(cam.capture.units.first.wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(first(cam) for cam in state.cameras.values())), FIRST_FRAME_WAIT)


def _stop_captures(state: EdgeState) -> None:
    # Tell every camera first, then wait for all against one deadline: a source stuck in a
    # blocking read must not hold up the others' release.
    captures = [cam.capture for cam in state.cameras.values()]
    publishers = [cam.publisher for cam in state.cameras.values()]
    for publisher in publishers:
        publisher.request_stop()
    for capture in captures:
        capture.request_stop()
    deadline = time.monotonic() + CAPTURE_STOP_TIMEOUT
    for publisher in publishers:
        publisher.join(deadline)
    for capture in captures:
        capture.join(max(deadline - time.monotonic(), 0.0))


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
